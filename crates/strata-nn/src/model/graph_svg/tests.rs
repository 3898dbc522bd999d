use super::*;
use crate::layers::{ActivationLayer, Add, BatchNormalization, Conv2D, Dense};
use crate::model::model_from_spec;
use crate::{Activation, Layer};
use serde_json::json;

/// A tiny well-formedness check: tags balance, attribute values are
/// quoted, and every `&` starts a known entity.
fn check_xml(s: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = s;
    let check_text = |t: &str| {
        let mut parts = t.split('&');
        parts.next();
        for p in parts {
            let ok = ["amp;", "lt;", "gt;", "quot;", "apos;"]
                .iter()
                .any(|e| p.starts_with(e))
                || (p.starts_with('#') && p.contains(';'));
            assert!(ok, "bad entity near &{}", &p[..p.len().min(10)]);
        }
        assert!(!t.contains('>'), "raw > in text: {t}");
    };
    while let Some(i) = rest.find('<') {
        check_text(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("<?") {
            let e = r.find("?>").expect("unclosed <?");
            rest = &r[e + 2..];
            continue;
        }
        let e = rest.find('>').expect("unclosed tag");
        let tag = &rest[1..e];
        rest = &rest[e + 1..];
        assert!(!tag.contains('<'), "< inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name = body.split_whitespace().next().expect("empty tag");
        // attributes: name="value" pairs, values free of < and with good entities
        let mut attrs = body[name.len()..].trim();
        while !attrs.is_empty() {
            let eq = attrs.find("=\"").expect("attribute without =\"");
            assert!(!attrs[..eq].trim().contains(' '), "bad attribute in {tag}");
            let after = &attrs[eq + 2..];
            let close = after.find('"').expect("unclosed attribute value");
            check_text(&after[..close]);
            attrs = after[close + 1..].trim_start();
        }
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert!(rest.trim().is_empty());
}

fn attr(tag: &str, name: &str) -> f64 {
    let key = format!(" {name}=\"");
    let i = tag.find(&key).unwrap_or_else(|| panic!("{name} in {tag}")) + key.len();
    let j = tag[i..].find('"').unwrap();
    tag[i..i + j].parse().unwrap()
}

/// (centre x, top y) of the box drawn for `name` (its first, if shared).
fn box_of(svg: &str, name: &str) -> (f64, f64) {
    let key = format!("<rect data-name=\"{name}\"");
    let i = svg.find(&key).unwrap_or_else(|| panic!("no box {name}"));
    let tag = &svg[i..i + svg[i..].find('>').unwrap()];
    (attr(tag, "x") + attr(tag, "width") / 2.0, attr(tag, "y"))
}

fn blend_head() -> Model {
    model_from_spec(
        &json!({
          "name": "blend_head",
          "inputs": {"tokens": [512, 768]},
          "layers": [
            {"name": "start_a", "type": "Dense", "units": 1, "inputs": ["tokens"]},
            {"name": "start_b", "type": "Dense", "units": 1, "inputs": ["tokens"]},
            {"name": "mix", "type": "Blend", "inputs": ["start_a", "start_b"]},
            {"name": "flat", "type": "Reshape", "target_shape": [512], "inputs": ["mix"]},
            {"name": "probs", "type": "Softmax", "inputs": ["flat"]}
          ],
          "outputs": ["probs"]
        }),
        0,
    )
    .unwrap()
}

#[test]
fn blend_head_branches_side_by_side() {
    let svg = blend_head().graph_svg();
    check_xml(&svg);
    assert!(svg.starts_with("<?xml"));
    // 1 input + 5 layers; tokens->a, tokens->b, a->mix, b->mix, mix->flat, flat->probs
    assert_eq!(svg.matches("<rect").count(), 6, "{svg}");
    assert_eq!(svg.matches("<path").count(), 6, "{svg}");
    assert_eq!(svg.matches("marker-end=").count(), 6);
    assert_eq!(svg.matches("data-to=\"mix\"").count(), 2);
    for name in ["tokens", "start_a", "start_b", "mix", "flat", "probs"] {
        assert!(svg.contains(&format!(">{name}</tspan>")), "{name}");
    }
    assert!(svg.contains("(None, 512, 768)") && svg.contains("(Blend)"));
    let (ax, ay) = box_of(&svg, "start_a");
    let (bx, by) = box_of(&svg, "start_b");
    assert_eq!(ay, by, "the branches share a rank");
    assert!((ax - bx).abs() > 100.0, "side by side: {ax} {bx}");
    let (tx, ty) = box_of(&svg, "tokens");
    let (mx, my) = box_of(&svg, "mix");
    assert!(ty < ay && ay < my);
    // the input above the middle of its branches, the merge below it
    assert!((tx - (ax + bx) / 2.0).abs() < 1.0, "{tx} {ax} {bx}");
    assert!((mx - tx).abs() < 1.0, "{mx} {tx}");
    let svg_tag = &svg[svg.find("<svg").unwrap()..];
    let w = attr(&svg_tag[..svg_tag.find('>').unwrap()], "width");
    assert!(w > 300.0 && w < 800.0, "{w}");
}

#[test]
fn names_are_escaped() {
    let mut m = Model::functional("a&b <graph>", 0);
    let x = m.input("in\"put", &[4]).unwrap();
    let y = m.apply(Dense::new(2).named("d<1>&'q'"), &[x]).unwrap();
    m.set_outputs(&[y]).unwrap();
    let svg = m.graph_svg();
    check_xml(&svg);
    assert!(svg.contains("d&lt;1&gt;&amp;&apos;q&apos;"), "{svg}");
    assert!(svg.contains("in&quot;put"), "{svg}");
    assert!(
        svg.contains("<title>a&amp;b &lt;graph&gt;</title>"),
        "{svg}"
    );
    assert!(!svg.contains("d<1>"));
}

#[test]
fn sequential_is_one_column() {
    let mut m = Model::sequential("stack", &[28, 28, 1], 0);
    m.add(Conv2D::new(8, (3, 3))).unwrap();
    m.add(BatchNormalization::new()).unwrap();
    m.add(ActivationLayer::new(Activation::Relu)).unwrap();
    m.add(crate::layers::Flatten::new()).unwrap();
    m.add(Dense::new(10)).unwrap();
    let svg = m.graph_svg();
    check_xml(&svg);
    assert_eq!(svg.matches("<rect").count(), 6);
    assert_eq!(svg.matches("<path").count(), 5);
    let names = [
        "input_layer",
        "conv2d",
        "batch_normalization",
        "activation",
        "flatten",
        "dense",
    ];
    let boxes: Vec<(f64, f64)> = names.iter().map(|n| box_of(&svg, n)).collect();
    for w in boxes.windows(2) {
        assert!((w[0].0 - w[1].0).abs() < 0.01, "one column: {boxes:?}");
        assert!(w[1].1 > w[0].1, "top to bottom: {boxes:?}");
    }
    // straight arrows: no curve in a chain
    assert!(!svg.contains(" C"), "{svg}");
}

/// A residual stack shaped like the zoo's resnet18 (same layers and
/// names; the zoo itself is not a dependency of this crate).
fn resnet18_like(input: usize) -> Model {
    fn conv(name: &str, f: usize, k: usize, s: usize) -> Conv2D {
        Conv2D::new(f, (k, k))
            .strides(s)
            .padding(if k == 1 {
                strata_core::ops::Padding::Valid
            } else {
                strata_core::ops::Padding::symmetric(k / 2)
            })
            .use_bias(false)
            .named(name)
    }
    fn relu(name: &str) -> ActivationLayer {
        let mut r = ActivationLayer::new(Activation::Relu);
        r.set_name(name);
        r
    }
    let mut m = Model::functional("resnet18", 0);
    let i = m.input("input_layer", &[input, input, 3]).unwrap();
    let mut x = m.apply(conv("conv1", 64, 7, 2), &[i]).unwrap();
    x = m
        .apply(BatchNormalization::new().named("bn1"), &[x])
        .unwrap();
    x = m.apply(relu("relu"), &[x]).unwrap();
    let mut c = 64;
    for stage in 0..4 {
        for b in 0..2 {
            let p = |s: &str| format!("layer{}.{b}.{s}", stage + 1);
            let planes = 64 << stage;
            let s = if stage > 0 && b == 0 { 2 } else { 1 };
            let mut y = m.apply(conv(&p("conv1"), planes, 3, s), &[x]).unwrap();
            y = m
                .apply(BatchNormalization::new().named(&p("bn1")), &[y])
                .unwrap();
            y = m.apply(relu(&p("relu1")), &[y]).unwrap();
            y = m.apply(conv(&p("conv2"), planes, 3, 1), &[y]).unwrap();
            y = m
                .apply(BatchNormalization::new().named(&p("bn2")), &[y])
                .unwrap();
            let short = if s != 1 || c != planes {
                let d = m
                    .apply(conv(&p("downsample.0"), planes, 1, s), &[x])
                    .unwrap();
                m.apply(BatchNormalization::new().named(&p("downsample.1")), &[d])
                    .unwrap()
            } else {
                x
            };
            let mut add = Add::new();
            add.set_name(&p("add"));
            let sum = m.apply(add, &[y, short]).unwrap();
            x = m.apply(relu(&p("relu")), &[sum]).unwrap();
            c = planes;
        }
    }
    x = m
        .apply(
            crate::layers::GlobalAveragePooling2D::new(false).named("avgpool"),
            &[x],
        )
        .unwrap();
    x = m.apply(Dense::new(10).named("fc"), &[x]).unwrap();
    m.set_outputs(&[x]).unwrap();
    m
}

#[test]
fn residual_adds_have_two_arrows_and_shortcuts_go_round() {
    let m = resnet18_like(32);
    let l = layout(&m);
    let svg = render(&l);
    check_xml(&svg);
    let boxes = m.inputs.len() + m.nodes.len();
    assert_eq!(svg.matches("<rect").count(), boxes);
    let edges: usize = m.nodes.iter().map(|n| n.inputs.len()).sum();
    assert_eq!(svg.matches("<path").count(), edges);
    assert_eq!(svg.matches("data-to=\"layer1.0.add\"").count(), 2);
    assert_eq!(svg.matches("data-to=\"layer2.0.add\"").count(), 2);
    // the main path runs straight down the middle, block after block
    let (x1, _) = box_of(&svg, "layer1.0.conv1");
    let (x2, _) = box_of(&svg, "layer3.1.conv2");
    let (xa, _) = box_of(&svg, "layer4.1.add");
    assert!(
        (x1 - x2).abs() < 8.0 && (x1 - xa).abs() < 8.0,
        "{x1} {x2} {xa}"
    );
    // no dummy (a point of a long edge) overlaps a box on its rank
    for rank in &l.ranks {
        for w in rank.windows(2) {
            let (a, b) = (&l.vertices[w[0]], &l.vertices[w[1]]);
            assert!(b.x - a.x >= (a.width + b.width) / 2.0 + GAP / 2.0 - 1e-6);
        }
    }
}

#[test]
fn isotonic_placement_keeps_order_and_gaps() {
    let x = place_in_order(&[0.0, 0.0, 0.0], &[1.0, 1.0, 1.0], &[10.0, 10.0]);
    assert_eq!(x, vec![-10.0, 0.0, 10.0]);
    let x = place_in_order(&[5.0, 100.0], &[1.0, 1.0], &[10.0]);
    assert_eq!(x, vec![5.0, 100.0]);
    let x = place_in_order(&[0.0, 0.0], &[1.0, 0.0001], &[10.0]);
    assert!(x[0].abs() < 0.01 && (x[1] - 10.0).abs() < 0.01, "{x:?}");
}
