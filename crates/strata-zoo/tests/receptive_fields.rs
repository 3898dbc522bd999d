//! Receptive fields, multiply-adds and activation memory of the zoo models
//! (`Model::profile`, shown by `summary` and `explain`), each checked against
//! a calculation written here from the architecture, and against published
//! figures where they apply: torchinfo's summaries of torchvision's ResNets
//! and the receptive-field table of Araujo et al., "Computing Receptive
//! Fields of Convolutional Neural Networks" (Distill, 2019).

use serde_json::Value;
use strata_core::ops::Padding;
use strata_nn::layers::{Add, Conv2D, MaxPooling2D};
use strata_nn::model::Field;
use strata_nn::{Model, Source};
use strata_zoo::{build, ZooOptions};

fn zoo(name: &str, classes: usize) -> Model {
    let opts = ZooOptions {
        classes: Some(classes),
        input_shape: None,
        seed: 0,
    };
    build(name, &opts).unwrap()
}

/// The field of the first application of the layer `name`.
fn field_at(m: &Model, name: &str) -> Field {
    let li = m.layer_index(name).unwrap();
    let ni = m.nodes().iter().position(|n| n.layer == li).unwrap();
    m.profile().nodes[ni].field
}

/// One step of the recurrence: a window of `k` taps with stride `s` (no dilation).
fn step((rf, jump): (usize, usize), k: usize, s: usize) -> (usize, usize) {
    (rf + (k - 1) * jump, jump * s)
}

/// (kernel, stride) of the windows on the longest path of torchvision's
/// ResNet (v1.5): the 7x7/2 stem, the 3x3/2 max-pool, then per block its 3x3
/// convolutions; a stage's first block (stages 2-4) carries the stride, on
/// its 3x3 convolution (BasicBlock: the first of its two). 1x1 convolutions
/// add nothing to the field; the shortcut (identity or a 1x1 convolution with
/// the same stride) has a smaller field and the same jump, so the Add keeps
/// the main path's.
fn torchvision_path(depth: usize) -> Vec<(usize, usize)> {
    let (threes_per_block, blocks) = match depth {
        18 => (2, [2, 2, 2, 2]),
        34 => (2, [3, 4, 6, 3]),
        50 => (1, [3, 4, 6, 3]),
        _ => unreachable!(),
    };
    let mut path = vec![(7, 2), (3, 2)];
    for (stage, &n) in blocks.iter().enumerate() {
        for b in 0..n {
            for t in 0..threes_per_block {
                let strided = stage > 0 && b == 0 && t == 0;
                path.push((3, if strided { 2 } else { 1 }));
            }
        }
    }
    path
}

fn along(path: &[(usize, usize)]) -> (usize, usize) {
    path.iter().fold((1, 1), |acc, &(k, s)| step(acc, k, s))
}

#[test]
fn resnet_fields_at_the_end_of_layer4() {
    // ResNet-50 (torchvision v1.5), by hand: stem 7x7/2 -> 7, jump 2; pool
    // 3x3/2 -> 7 + 2*2 = 11, jump 4. Each 3x3 adds 2*jump_in:
    //   jump 4: layer1's 3 blocks + layer2.0's strided 3x3 = 4 convs, +32 -> 43
    //   jump 8: layer2.1-3 + layer3.0's strided 3x3   = 4 convs, +64 -> 107
    //   jump 16: layer3.1-5 + layer4.0's strided 3x3  = 6 convs, +192 -> 299
    //   jump 32: layer4.1-2                           = 2 convs, +128 -> 427
    // so 427 with jump 32, the value usually quoted for torchvision's resnet50.
    assert_eq!(along(&torchvision_path(50)), (427, 32));
    // ResNet-18: 11 at jump 4; 4 convs +32 -> 43; strided conv at jump 4 +8 -> 51
    // (jump 8), 3 convs +48 -> 99; +16 -> 115 (jump 16), 3 convs +96 -> 211;
    // +32 -> 243 (jump 32), 3 convs +192 -> 435.
    assert_eq!(along(&torchvision_path(18)), (435, 32));
    // ResNet-34: 11; 6 convs at jump 4 +48 -> 59; +8 -> 67 (jump 8), 7 convs
    // +112 -> 179; +16 -> 195 (jump 16), 11 convs +352 -> 547; +32 -> 579
    // (jump 32), 5 convs +320 -> 899.
    assert_eq!(along(&torchvision_path(34)), (899, 32));

    for (name, last, rf) in [
        ("resnet18", "layer4.1.relu", 435),
        ("resnet34", "layer4.2.relu", 899),
        ("resnet50", "layer4.2.relu", 427),
    ] {
        let m = zoo(name, 10);
        let want = Field::Window {
            size: [rf, rf],
            jump: [32, 32],
        };
        assert_eq!(field_at(&m, last), want, "{name}");
        // the global pooling sees everything, and so does the classifier
        assert_eq!(field_at(&m, "avgpool"), Field::Global, "{name}");
        assert_eq!(field_at(&m, "fc"), Field::Global, "{name}");
        let j = m.summary_json();
        let row = |n: &str| {
            j["layers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["name"] == n)
                .unwrap()
                .clone()
        };
        assert_eq!(row(last)["receptive_field"], serde_json::json!([rf, rf]));
        assert_eq!(row(last)["jump"], serde_json::json!([32, 32]));
        assert_eq!(row("avgpool")["receptive_field"], Value::Null);
        // the stem as torchvision's: conv1 7x7/2 -> 7, jump 2; maxpool -> 11, jump 4
        assert_eq!(row("conv1")["receptive_field"], serde_json::json!([7, 7]));
        assert_eq!(
            row("maxpool")["receptive_field"],
            serde_json::json!([11, 11])
        );
        assert_eq!(row("maxpool")["jump"], serde_json::json!([4, 4]));
    }
}

/// TF-slim's `resnet_v1_50`, the network of the Distill paper's table, with
/// 4 channels everywhere (channels do not change fields): stem 7x7/2 and
/// max-pool 3x3/2, then blocks of 3, 4, 6, 3 bottleneck units whose stride
/// sits on the 3x3 of the *last* unit of blocks 1-3 (block 4 has none); a
/// strided unit's shortcut is a 1x1 max-pool with that stride.
fn slim_resnet_v1_50() -> Model {
    let mut m = Model::functional("resnet_v1_50", 0);
    let input = m.input("x", &[224, 224, 3]).unwrap();
    let conv = |k: usize, s: usize| Conv2D::new(4, (k, k)).strides(s).padding(Padding::Same);
    let mut x = m.apply(conv(7, 2), &[input]).unwrap();
    x = m
        .apply(MaxPooling2D::new((3, 3), Some((2, 2)), "same"), &[x])
        .unwrap();
    for (units, stride) in [(3, 2), (4, 2), (6, 2), (3, 1)] {
        for u in 0..units {
            let s = if u + 1 == units { stride } else { 1 };
            let mut y = m.apply(conv(1, 1), &[x]).unwrap();
            y = m.apply(conv(3, s), &[y]).unwrap();
            y = m.apply(conv(1, 1), &[y]).unwrap();
            let shortcut: Source = m
                .apply(MaxPooling2D::new((1, 1), Some((s, s)), "valid"), &[x])
                .unwrap();
            x = m.apply(Add::new(), &[y, shortcut]).unwrap();
        }
    }
    m.set_outputs(&[x]).unwrap();
    m
}

#[test]
fn tf_slim_resnet_v1_50_gives_the_distill_papers_483() {
    // Distill lists resnet_v1_50 (TF-slim) with receptive field 483 and
    // effective stride 32. By hand, from 11 at jump 4 after the stem:
    //   jump 4: block1's 3 units (the third strided) = 3 convs, +24 -> 35
    //   jump 8: block2's 4 units                    = 4 convs, +64 -> 99
    //   jump 16: block3's 6 units                   = 6 convs, +192 -> 291
    //   jump 32: block4's 3 units (no stride)       = 3 convs, +192 -> 483
    // torchvision's v1.5 puts each stage's stride on its first block's 3x3,
    // one 3x3 earlier than TF-slim's last-unit stride, and ends with only 2
    // 3x3 convolutions at jump 32 instead of 3: 4/4/6/2 convs at jumps
    // 4/8/16/32 against TF-slim's 3/4/6/3, so 427 = 483 - 64 + 8. (Keras's
    // and Caffe's v1, with the stride on the first 1x1 of a stage, also give
    // 483: that 1x1 adds nothing and every 3x3 of the stage reads at the
    // stage's jump.) Both end with jump 4 * 2 * 2 * 2 = 32.
    let m = slim_resnet_v1_50();
    let p = m.profile();
    assert_eq!(
        p.nodes.last().unwrap().field,
        Field::Window {
            size: [483, 483],
            jump: [32, 32]
        }
    );
    assert_eq!(m.output_shapes(), vec![vec![7, 7, 4]]);
}

/// Multiply-adds of torchvision's ResNet convolutions and classifier,
/// written from the architecture: `H_out*W_out*C_out*k*k*C_in` per conv.
fn resnet_macs_by_hand(depth: usize, classes: usize) -> u64 {
    let (bottleneck, blocks) = match depth {
        18 => (false, [2, 2, 2, 2]),
        50 => (true, [3, 4, 6, 3]),
        _ => unreachable!(),
    };
    let conv = |hw: u64, cout: u64, k: u64, cin: u64| hw * hw * cout * k * k * cin;
    let mut total = conv(112, 64, 7, 3);
    let (mut hw, mut cin) = (56u64, 64u64);
    for (stage, &n) in blocks.iter().enumerate() {
        let planes = 64u64 << stage;
        let cout = if bottleneck { planes * 4 } else { planes };
        for b in 0..n {
            let strided = stage > 0 && b == 0;
            let out = if strided { hw / 2 } else { hw };
            if bottleneck {
                total += conv(hw, planes, 1, cin) + conv(out, planes, 3, planes);
                total += conv(out, cout, 1, planes);
            } else {
                total += conv(out, planes, 3, cin) + conv(out, planes, 3, planes);
            }
            if strided || cin != cout {
                total += conv(out, cout, 1, cin);
            }
            hw = out;
            cin = cout;
        }
    }
    total + cin * classes as u64
}

#[test]
fn resnet_multiply_adds_and_memory_match_torchinfo() {
    // torchinfo, torchvision resnet50 at (1, 3, 224, 224):
    //   Total mult-adds (G): 4.09, Input size (MB): 0.60,
    //   Forward/backward pass size (MB): 177.83, Params size (MB): 102.23
    // resnet18: 1.81 G, 0.60, 39.75, 46.76.
    for (name, depth, gmacs, fwd_bwd, torch_params) in [
        ("resnet50", 50, 4.09, "177.83", 25_557_032u64),
        ("resnet18", 18, 1.81, "39.75", 11_689_512),
    ] {
        let m = zoo(name, 1000);
        let s = m.summary();
        assert_eq!(s.total_macs, resnet_macs_by_hand(depth, 1000), "{name}");
        let rel = (s.total_macs as f64 - gmacs * 1e9).abs() / (gmacs * 1e9);
        assert!(rel < 0.01, "{name}: {} vs {gmacs} G", s.total_macs);
        // torchinfo counts every weight tensor once per output position, so
        // it adds BatchNormalization's gamma and beta (2*C per sample, and
        // strata's trainable BN parameters are exactly those) and fc's bias;
        // both conventions print the same 2 decimals
        let bn_affine: u64 = s
            .layers
            .iter()
            .filter(|l| l.class == "BatchNormalization")
            .map(|l| (l.params / 2) as u64)
            .sum();
        let torchinfo = s.total_macs + bn_affine + 1000;
        assert_eq!(
            format!("{:.2}", torchinfo as f64 / 1e9),
            format!("{gmacs:.2}"),
            "{name}"
        );
        assert_eq!(
            format!("{:.2}", s.total_macs as f64 / 1e9),
            format!("{gmacs:.2}")
        );
        // torchinfo's forward/backward size (twice the outputs of the conv, BN
        // and fc layers) comes out to the hundredth of a MB
        assert_eq!(
            format!("{:.2}", s.forward_backward_bytes as f64 / 1e6),
            fwd_bwd,
            "{name}"
        );
        assert_eq!(s.input_bytes, 224 * 224 * 3 * 4);
        // strata's params size counts BatchNormalization's moving statistics,
        // which PyTorch keeps as buffers and torchinfo leaves out
        let moving = s.non_trainable_params as u64;
        assert_eq!(s.total_params as u64, torch_params + moving, "{name}");
        let t = m.summary_table();
        assert!(
            t.contains(&format!(" Total mult-adds (G): {gmacs:.2}\n")),
            "{t}"
        );
        assert!(
            t.contains(&format!(" Forward/backward pass size (MB): {fwd_bwd} ")),
            "{t}"
        );
        assert!(t.contains(" Input size (MB): 0.60\n"), "{t}");
        if name == "resnet50" {
            // 25,610,152 * 4 bytes = 102.44 MB (torchinfo's 102.23 + 53,120 * 4)
            assert!(t.contains(" Params size (MB): 102.44\n"), "{t}");
            // conv1: 112*112*64*(7*7*3) = 118,013,952, output 112*112*64*4 bytes
            let conv1 = t.lines().find(|l| l.starts_with("conv1 (Conv2D)")).unwrap();
            assert!(
                conv1.contains("118,013,952") && conv1.contains("3.21 MB"),
                "{conv1}"
            );
            assert!(conv1.contains("7x7") && conv1.contains("2x2"), "{conv1}");
        }
    }
}

#[test]
fn mnist_cnn_by_hand() {
    let m = zoo("mnist-cnn", 10);
    let s = m.summary();
    // conv2d   3x3x1 -> 32 on 28x28: 26*26*32*(3*3*1)   = 194,688
    // conv2d_1 3x3x32 -> 64 on 13x13: 11*11*64*(3*3*32) = 2,230,272
    // dense    1600 -> 10:             1600*10            = 16,000
    // pools, flatten, dropout: 0. Total 2,440,960.
    let macs: Vec<u64> = s.layers.iter().map(|l| l.macs).collect();
    assert_eq!(macs, [194_688, 0, 2_230_272, 0, 0, 0, 16_000]);
    assert_eq!(s.total_macs, 2_440_960);
    // outputs: 26*26*32 = 21,632; 13*13*32 = 5,408; 11*11*64 = 7,744;
    // 5*5*64 = 1,600 (pool, flatten and dropout each); 10: 39,594 values,
    // 158,376 bytes
    let bytes: Vec<u64> = s.layers.iter().map(|l| l.activation_bytes).collect();
    assert_eq!(bytes, [86_528, 21_632, 30_976, 6_400, 6_400, 6_400, 40]);
    assert_eq!(s.total_activation_bytes, 158_376);
    // fields: 3 (jump 1); pool 2/2: 3 + 1 = 4 (jump 2); 3x3: 4 + 2*2 = 8;
    // pool: 8 + 1*2 = 10 (jump 4); then Flatten sees everything
    let fields: Vec<Field> = m.profile().nodes.iter().map(|n| n.field).collect();
    let w = |r: usize, j: usize| Field::Window {
        size: [r, r],
        jump: [j, j],
    };
    assert_eq!(
        fields,
        [
            w(3, 1),
            w(4, 2),
            w(8, 2),
            w(10, 4),
            Field::Global,
            Field::Global,
            Field::Global
        ]
    );

    // the JSON fields and their types
    let j = m.summary_json();
    let l = &j["layers"][2];
    assert_eq!(l["name"], "conv2d_1");
    assert_eq!(l["macs"].as_u64(), Some(2_230_272));
    assert_eq!(l["activation_bytes"].as_u64(), Some(30_976));
    assert_eq!(l["receptive_field"], serde_json::json!([8, 8]));
    assert_eq!(l["jump"], serde_json::json!([2, 2]));
    assert!(j["layers"][6]["receptive_field"].is_null());
    assert!(j["layers"][6]["jump"].is_null());
    assert_eq!(j["total_macs"].as_u64(), Some(2_440_960));
    assert_eq!(j["total_activation_bytes"].as_u64(), Some(158_376));
    // the fields that were there before are unchanged
    assert_eq!(j["layers"][2]["params"], 18_496);
    assert_eq!(
        j["layers"][2]["output_shape"],
        serde_json::json!([null, 11, 11, 64])
    );
    assert_eq!(j["total_params"], 34_826);

    // and the table
    let t = m.summary_table();
    let head = t.lines().nth(2).unwrap();
    assert_eq!(
        head.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>(),
        [
            "Layer (type)",
            "Output Shape",
            "Param #",
            "Mult-adds",
            "Activation memory",
            "Receptive field",
            "Jump"
        ],
        "{t}"
    );
    let row = t
        .lines()
        .find(|l| l.starts_with("conv2d_1 (Conv2D)"))
        .unwrap();
    assert_eq!(
        row.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>(),
        [
            "conv2d_1 (Conv2D)",
            "(None, 11, 11, 64)",
            "18,496",
            "2,230,272",
            "30.98 KB",
            "8x8",
            "2x2"
        ],
        "{t}"
    );
    let dense = t.lines().find(|l| l.starts_with("dense (Dense)")).unwrap();
    let cells: Vec<&str> = dense
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[3..], ["16,000", "40 B", "global", "-"], "{dense}");
    assert!(t.contains(" Total mult-adds (M): 2.44\n"), "{t}");
    assert!(t.contains(" Forward activation memory (MB): 0.16 "), "{t}");
}

#[test]
fn explain_gives_each_layers_cost_and_field() {
    let m = zoo("resnet50", 3);
    let e = m.explain();
    let conv = e.iter().find(|e| e.name == "layer4.0.conv2").unwrap();
    let text = conv.to_string();
    // 3x3 stride 2 from 14x14x512 to 7x7x512: 7*7*512*(3*3*512)
    assert!(
        text.contains("  multiply-adds:     115,605,504 per sample\n"),
        "{text}"
    );
    // 7*7*512 = 25,088 values of 4 bytes
    assert!(
        text.contains("  activation memory: 100.35 KB per sample (25,088 float32 values)\n"),
        "{text}"
    );
    // 267 at jump 16 after layer3, + 2*16 = 299, jump 32
    assert!(
        text.contains("  receptive field:   299x299 input pixels, jump 32x32\n"),
        "{text}"
    );
    let fc = e.iter().find(|e| e.name == "fc").unwrap().to_string();
    assert!(
        fc.contains("  multiply-adds:     6,144 per sample\n"),
        "{fc}"
    );
    assert!(fc.contains("  receptive field:   global"), "{fc}");
}
