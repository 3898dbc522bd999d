//! ONNX import: strata's own exports come back with the same outputs; graphs
//! written as PyTorch writes them (NCHW, BatchNorm, ReLU6, ceil-mode pools,
//! grouped and dilated convolutions, Flatten into Gemm) agree with tract on
//! the same input; bad files give one clear error each.

mod common;

use common::{
    blend_head_model, depthwise_model, mnist_cnn_model, pools_model, random_inputs, relative,
    resnet18_model, seed_conv_model, tract_run,
};
use strata_core::{Rng, Tensor};
use strata_nn::model::Model;
use strata_onnx::build::{attr_float, attr_int, attr_ints, attr_string, GraphBuilder};
use strata_onnx::proto::TensorProto;
use strata_onnx::{export_bytes, import_bytes, ExportOptions, OnnxError};

/// Exports `model`, imports it, and compares the imported model's outputs
/// with the original's; then exports the imported model and runs that in
/// tract. Returns the largest relative difference.
fn round_trip(name: &str, model: &mut Model) -> f32 {
    let bytes = export_bytes(model, &ExportOptions::default()).expect("export");
    let imported = import_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: import: {e}"));
    let mut again = imported.model;
    let xs = random_inputs(model);
    let want = model.predict(&xs, 2).unwrap();
    let got = again.predict(&xs, 2).unwrap();
    assert_eq!(got.len(), want.len(), "{name}: outputs");
    let mut worst = 0.0f32;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.shape(), w.shape(), "{name}: output shape");
        worst = worst.max(relative(&g.to_vec(), &w.to_vec()));
    }
    let bytes2 = export_bytes(&again, &ExportOptions::default()).expect("export again");
    for (g, w) in tract_run(&bytes2, &xs).iter().zip(&want) {
        worst = worst.max(relative(&g.1, &w.to_vec()));
    }
    println!("{name}: export -> import -> predict, largest relative difference {worst:.2e}");
    worst
}

#[test]
fn strata_exports_import_with_the_same_outputs() {
    let mut models: [(&str, Model); 6] = [
        ("mnist-cnn", mnist_cnn_model()),
        ("seed_conv", seed_conv_model()),
        ("blend_head", blend_head_model()),
        ("resnet18", resnet18_model()),
        ("depthwise", depthwise_model()),
        ("pools", pools_model()),
    ];
    for (name, m) in &mut models {
        let rel = round_trip(name, m);
        assert!(rel < 1e-5, "{name}: {rel}");
    }
}

#[test]
fn names_and_class_names_survive_the_round_trip() {
    let mut m = mnist_cnn_model();
    let mut info = m.info().clone();
    info.class_names = (0..10).map(|i| format!("digit {i}")).collect();
    m.set_info(info);
    let bytes = export_bytes(&m, &ExportOptions::default()).unwrap();
    let back = import_bytes(&bytes).unwrap().model;
    assert_eq!(back.info().class_names, m.info().class_names);
    let names = |m: &Model| -> Vec<String> {
        m.layers()
            .iter()
            .filter(|l| !l.weights().is_empty())
            .map(|l| l.name().to_string())
            .collect()
    };
    assert_eq!(names(&back), names(&m));
    assert_eq!(back.count_params(), m.count_params());
}

/// Seeded values in [-scale, scale].
fn values(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-scale, scale)).collect()
}

/// Imports `g`, runs it and tract on the same random batch (NCHW for tract
/// and NHWC for strata where `nchw`), and returns the largest relative
/// difference over the outputs.
fn against_tract(g: &GraphBuilder, input: &[usize], nchw: bool) -> f32 {
    let bytes = g.bytes(17);
    let mut imported = import_bytes(&bytes).unwrap_or_else(|e| panic!("import: {e}"));
    let mut rng = Rng::new(11);
    let mut shape = vec![2];
    shape.extend(input);
    let n: usize = shape.iter().product();
    let x = Tensor::from_vec(values(&mut rng, n, 1.0), &shape).unwrap();
    let want = tract_run(&bytes, std::slice::from_ref(&x));
    let x_strata = if nchw {
        x.permute(&[0, 2, 3, 1]).unwrap()
    } else {
        x
    };
    let got = imported.model.predict(&[x_strata], 2).unwrap();
    assert_eq!(got.len(), want.len());
    let mut worst = 0.0f32;
    for (g, (wshape, w)) in got.iter().zip(&want) {
        let g = if g.shape().len() == 4 && wshape.len() == 4 && g.shape() != &wshape[..] {
            g.permute(&[0, 3, 1, 2]).unwrap()
        } else {
            g.clone()
        };
        assert_eq!(g.shape(), &wshape[..], "output shape");
        assert!(
            w.iter().any(|v| v.abs() > 1e-3),
            "an all-zero output compares nothing"
        );
        worst = worst.max(relative(&g.to_vec(), w));
    }
    worst
}

/// A PyTorch-style chain: Conv + BatchNorm + ReLU6, a ceil-mode max pool,
/// a dilated depthwise conv whose bias comes as a separate Add, LeakyReLU,
/// an average pool counting its padding, Pad, a grouped strided SAME conv
/// with a fused ReLU, Flatten of NCHW maps into Gemm (transB, alpha, beta),
/// Softmax.
fn torch_like_chain() -> GraphBuilder {
    let mut r = Rng::new(3);
    let mut g = GraphBuilder::new("torch_like");
    g.input("x", &[3, 12, 10]);
    g.init("w1", &[8, 3, 3, 3], &values(&mut r, 216, 0.4))
        .init("b1", &[8], &values(&mut r, 8, 0.2))
        .init(
            "gamma",
            &[8],
            &values(&mut r, 8, 0.5)
                .iter()
                .map(|v| v + 1.0)
                .collect::<Vec<_>>(),
        )
        .init("beta", &[8], &values(&mut r, 8, 0.2))
        .init("mean", &[8], &values(&mut r, 8, 0.2))
        .init(
            "var",
            &[8],
            &values(&mut r, 8, 0.4)
                .iter()
                .map(|v| v + 1.0)
                .collect::<Vec<_>>(),
        )
        .init("zero", &[], &[0.0])
        .init("six", &[], &[6.0])
        .init("w2", &[16, 1, 3, 3], &values(&mut r, 144, 0.5))
        .init("b2", &[1, 16, 1, 1], &values(&mut r, 16, 0.3))
        .init("w3", &[6, 8, 3, 3], &values(&mut r, 432, 0.3))
        .init("w4", &[5, 6 * 3 * 2], &values(&mut r, 180, 0.3))
        .init("c4", &[5], &values(&mut r, 5, 0.3))
        .init_i64("pads", &[0, 0, 1, 0, 0, 0, 0, 1]);
    g.node(
        "Conv",
        &["x", "w1", "b1"],
        &["c1"],
        vec![attr_ints("pads", vec![1, 1, 1, 1])],
    )
    .node(
        "BatchNormalization",
        &["c1", "gamma", "beta", "mean", "var"],
        &["bn1"],
        vec![attr_float("epsilon", 1e-3)],
    )
    .node("Clip", &["bn1", "zero", "six"], &["r1"], vec![])
    .node(
        "MaxPool",
        &["r1"],
        &["p1"],
        vec![
            attr_ints("kernel_shape", vec![3, 3]),
            attr_ints("strides", vec![2, 2]),
            attr_ints("pads", vec![1, 1, 1, 1]),
            attr_int("ceil_mode", 1),
        ],
    )
    .node(
        "Conv",
        &["p1", "w2"],
        &["c2"],
        vec![
            attr_int("group", 8),
            attr_ints("dilations", vec![2, 2]),
            attr_ints("pads", vec![2, 2, 2, 2]),
        ],
    )
    .node("Add", &["c2", "b2"], &["a2"], vec![])
    .node(
        "LeakyRelu",
        &["a2"],
        &["r2"],
        vec![attr_float("alpha", 0.1)],
    )
    .node(
        "AveragePool",
        &["r2"],
        &["p2"],
        vec![
            attr_ints("kernel_shape", vec![2, 2]),
            attr_ints("strides", vec![2, 2]),
            attr_ints("pads", vec![1, 0, 1, 0]),
            attr_int("count_include_pad", 1),
        ],
    )
    .node("Pad", &["p2", "pads"], &["pd"], vec![])
    .node(
        "Conv",
        &["pd", "w3"],
        &["c3"],
        vec![
            attr_int("group", 2),
            attr_ints("strides", vec![2, 2]),
            attr_string("auto_pad", "SAME_UPPER"),
        ],
    )
    .node("Relu", &["c3"], &["r3"], vec![])
    .node("Flatten", &["r3"], &["f"], vec![attr_int("axis", 1)])
    .node(
        "Gemm",
        &["f", "w4", "c4"],
        &["gm"],
        vec![
            attr_int("transB", 1),
            attr_float("alpha", 0.5),
            attr_float("beta", 2.0),
        ],
    )
    .node("Softmax", &["gm"], &["probs"], vec![attr_int("axis", 1)])
    .output("probs");
    g
}

#[test]
fn a_pytorch_style_chain_agrees_with_tract() {
    let g = torch_like_chain();
    let imported = import_bytes(&g.bytes(17)).unwrap();
    let types: Vec<&str> = imported
        .model
        .layers()
        .iter()
        .map(|l| l.class_name())
        .collect();
    assert!(
        types.contains(&"DepthwiseConv2D") && types.contains(&"ZeroPadding2D"),
        "{types:?}"
    );
    let rel = against_tract(&g, &[3, 12, 10], true);
    println!("torch-like chain: largest relative difference {rel:.2e}");
    assert!(rel < 1e-5, "{rel}");
}

/// Branches and merges: 1x1 and 3x3 convolutions concatenated on channels,
/// a tensor times its sigmoid, an Add, the global pool reshaped to (N, -1),
/// MatMul + Add as one Dense, Dropout, Identity, Tanh; and a second output
/// transposed to NHWC.
fn branching_graph() -> GraphBuilder {
    let mut r = Rng::new(5);
    let mut g = GraphBuilder::new("branches");
    g.input("x", &[4, 6, 6]);
    g.init("wa", &[4, 4, 1, 1], &values(&mut r, 16, 0.5))
        .init("wb", &[4, 4, 3, 3], &values(&mut r, 144, 0.3))
        .init("wm", &[8, 3], &values(&mut r, 24, 0.5))
        .init("bm", &[3], &values(&mut r, 3, 0.5))
        .init_i64("flat", &[0, -1]);
    g.node("Conv", &["x", "wa"], &["ca"], vec![])
        .node(
            "Conv",
            &["x", "wb"],
            &["cb"],
            vec![attr_ints("pads", vec![1, 1, 1, 1])],
        )
        .node("Concat", &["ca", "cb"], &["cat"], vec![attr_int("axis", 1)])
        .node("Sigmoid", &["cat"], &["gate"], vec![])
        .node("Mul", &["cat", "gate"], &["m"], vec![])
        .node("Add", &["m", "cat"], &["s"], vec![])
        .node("GlobalAveragePool", &["s"], &["gap"], vec![])
        .node("Reshape", &["gap", "flat"], &["rs"], vec![])
        .node("MatMul", &["rs", "wm"], &["mm"], vec![])
        .node("Add", &["mm", "bm"], &["ab"], vec![])
        .node("Dropout", &["ab"], &["d"], vec![])
        .node("Identity", &["d"], &["id"], vec![])
        .node("Tanh", &["id"], &["y"], vec![])
        .node(
            "Transpose",
            &["s"],
            &["s_nhwc"],
            vec![attr_ints("perm", vec![0, 2, 3, 1])],
        )
        .output("y")
        .output("s_nhwc");
    g
}

#[test]
fn branches_and_merges_agree_with_tract() {
    let rel = against_tract(&branching_graph(), &[4, 6, 6], true);
    println!("branching graph: largest relative difference {rel:.2e}");
    assert!(rel < 1e-5, "{rel}");
}

#[test]
fn an_imported_model_has_trainable_weights_and_exports_again() {
    let g = torch_like_chain();
    let mut m = import_bytes(&g.bytes(17)).unwrap().model;
    assert!(m.count_trainable_params() > 0);
    let bytes = export_bytes(&m, &ExportOptions::default()).unwrap();
    let x = Tensor::from_vec(values(&mut Rng::new(1), 2 * 120 * 3, 1.0), &[2, 12, 10, 3]).unwrap();
    let want = m.predict(std::slice::from_ref(&x), 2).unwrap();
    let got = tract_run(&bytes, std::slice::from_ref(&x));
    assert!(relative(&got[0].1, &want[0].to_vec()) < 1e-5);
}

fn import_err(bytes: &[u8]) -> String {
    match import_bytes(bytes) {
        Ok(_) => panic!("accepted a bad file"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_unsupported_node_is_listed_at_once() {
    let mut g = GraphBuilder::new("odd");
    g.input("x", &[4]);
    g.node("Erf", &["x"], &["e"], vec![])
        .node("Relu", &["x"], &["r"], vec![])
        .node("Shape", &["r"], &["s"], vec![])
        .node("Relu", &["e"], &["after"], vec![])
        .output("after")
        .output("s");
    let msg = import_err(&g.bytes(17));
    assert!(msg.contains("2 unsupported ONNX node(s)"), "{msg}");
    assert!(
        msg.contains("Erf 'e'") && msg.contains("Shape 's'"),
        "{msg}"
    );
    assert!(
        !msg.contains("'after'"),
        "a node after an unsupported one is not blamed: {msg}"
    );
}

#[test]
fn bad_files_get_one_clear_error_each() {
    let good = export_bytes(&mnist_cnn_model(), &ExportOptions::default()).unwrap();
    assert!(import_err(b"").contains("empty"));
    assert!(import_err(b"this is a text file, not a model").contains("not an ONNX model"));
    let truncated = import_err(&good[..good.len() / 2]);
    assert!(truncated.contains("not an ONNX model"), "{truncated}");
    let mut rng = Rng::new(2);
    let noise: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    assert!(import_err(&noise).contains("ONNX"));

    let relu = |g: &mut GraphBuilder| {
        g.input("x", &[4]);
        g.node("Relu", &["x"], &["y"], vec![]).output("y");
    };
    let mut huge = GraphBuilder::new("huge");
    relu(&mut huge);
    huge.graph.initializer.push(TensorProto {
        name: "w".into(),
        dims: vec![1 << 40, 1 << 20],
        data_type: 1,
        ..Default::default()
    });
    let msg = import_err(&huge.bytes(17));
    assert!(
        msg.contains("initializer 'w'") && msg.contains("elements"),
        "{msg}"
    );

    let mut short = GraphBuilder::new("short");
    relu(&mut short);
    short.init("w", &[3, 3], &[1.0; 4]);
    let msg = import_err(&short.bytes(17));
    assert!(
        msg.contains("initializer 'w'") && msg.contains("holds 16 bytes"),
        "{msg}"
    );

    let mut negative = GraphBuilder::new("negative");
    relu(&mut negative);
    negative.graph.initializer.push(TensorProto {
        name: "w".into(),
        dims: vec![-3],
        data_type: 1,
        ..Default::default()
    });
    assert!(import_err(&negative.bytes(17)).contains("negative dimension"));

    let mut external = GraphBuilder::new("external");
    relu(&mut external);
    external.graph.initializer.push(TensorProto {
        name: "w".into(),
        dims: vec![2],
        data_type: 1,
        data_location: 1,
        ..Default::default()
    });
    assert!(import_err(&external.bytes(17)).contains("external file"));

    let mut cycle = GraphBuilder::new("cycle");
    cycle.input("x", &[4]);
    cycle
        .node("Add", &["x", "b"], &["a"], vec![])
        .node("Relu", &["a"], &["b"], vec![])
        .output("b");
    let msg = import_err(&cycle.bytes(17));
    assert!(msg.contains("cycle"), "{msg}");

    let mut dangling = GraphBuilder::new("dangling");
    dangling.input("x", &[4]);
    dangling
        .node("Add", &["x", "nowhere"], &["y"], vec![])
        .output("y");
    let msg = import_err(&dangling.bytes(17));
    assert!(
        msg.contains("'nowhere'") && msg.contains("not a graph input"),
        "{msg}"
    );

    let mut twice = GraphBuilder::new("twice");
    twice.input("x", &[4]);
    twice
        .node("Relu", &["x"], &["y"], vec![])
        .node("Sigmoid", &["x"], &["y"], vec![])
        .output("y");
    assert!(import_err(&twice.bytes(17)).contains("produced twice"));

    let mut old = GraphBuilder::new("old");
    relu(&mut old);
    let msg = import_err(&old.bytes(11));
    assert!(msg.contains("opset 11"), "{msg}");

    let mut missing_output = GraphBuilder::new("missing_output");
    relu(&mut missing_output);
    missing_output.output("ghost");
    assert!(import_err(&missing_output.bytes(17)).contains("'ghost'"));
}

#[test]
fn import_errors_are_typed() {
    assert!(matches!(
        import_bytes(b"nonsense"),
        Err(OnnxError::NotOnnx(_))
    ));
    let mut g = GraphBuilder::new("g");
    g.input("x", &[4]);
    g.node("Erf", &["x"], &["y"], vec![]).output("y");
    assert!(matches!(
        import_bytes(&g.bytes(17)),
        Err(OnnxError::UnsupportedNodes(v)) if v.len() == 1
    ));
}
