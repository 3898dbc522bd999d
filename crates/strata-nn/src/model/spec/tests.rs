use super::*;
use serde_json::json;

#[test]
fn errors_name_the_layer_and_field() {
    let bad = |spec: Value| model_from_spec(&spec, 0).unwrap_err().to_string();
    let e =
        bad(json!({"input_shape": [4], "layers": [{"type": "Dense", "units": 3, "colour": 1}]}));
    assert_eq!(
        e,
        "layer '#0 (Dense)': invalid colour: unknown argument 'colour' (Dense takes units, activation, use_bias, kernel_initializer, bias_initializer, dtype)"
    );
    let e = bad(json!({"input_shape": [4], "layers": [{"type": "Dense"}]}));
    assert!(e.contains("invalid units: is required"), "{e}");
    let e = bad(json!({"input_shape": [4], "layers": [{"type": "Nope"}]}));
    assert!(e.contains("unknown layer type 'Nope'"), "{e}");
    let e = bad(
        json!({"input_shape": [4], "layers": [{"type": "Dense", "units": 2, "name": "a"}, {"type": "Dense", "units": 2, "name": "a"}]}),
    );
    assert!(e.contains("duplicate layer name"), "{e}");
    let e = bad(json!({"inputs": {"x": [3]}, "layers": [
        {"name": "a", "type": "Dense", "units": 3, "inputs": ["b"]},
        {"name": "b", "type": "Dense", "units": 3, "inputs": ["a"]}], "outputs": ["b"]}));
    assert!(e.contains("cycle"), "{e}");
    let e = bad(
        json!({"inputs": {"x": [3]}, "layers": [{"name": "a", "type": "Dense", "units": 3, "inputs": ["y"]}], "outputs": ["a"]}),
    );
    assert!(e.contains("unknown input 'y'"), "{e}");
    let e = bad(json!({"input_shape": [4], "layers": [{"type": "Dense", "units": -2}]}));
    assert!(e.contains("invalid units"), "{e}");
}

#[test]
fn unknown_arguments_come_first_with_the_closest_known_one() {
    let bad = |spec: Value| model_from_spec(&spec, 0).unwrap_err().to_string();
    let seq = |layer: Value| json!({"input_shape": [8, 8, 1], "layers": [layer]});
    let e = bad(seq(
        json!({"type": "Conv2D", "filter": 8, "kernel_size": 3}),
    ));
    assert_eq!(
        e,
        "layer '#0 (Conv2D)': invalid filter: unknown argument 'filter' (did you mean 'filters'?)"
    );
    // before the values of the known ones are checked
    let e = bad(seq(
        json!({"type": "Conv2D", "name": "c", "Filters": 8, "kernel": 3, "padding": "nope"}),
    ));
    assert_eq!(
        e,
        "layer 'c': invalid Filters/kernel: unknown arguments 'Filters' (did you mean 'filters'?) and 'kernel' (did you mean 'kernel_size'?)"
    );
    let e = bad(seq(json!({"type": "MaxPooling2D", "stride": 2})));
    assert!(
        e.ends_with("unknown argument 'stride' (did you mean 'strides'?)"),
        "{e}"
    );
    let e = bad(seq(json!({"type": "Dropout", "rate": 0.5, "seed": 1})));
    assert_eq!(
        e,
        "layer '#0 (Dropout)': invalid seed: unknown argument 'seed' (Dropout takes rate)"
    );
    let e = bad(seq(json!({"type": "Flatten", "units": 3})));
    assert!(
        e.ends_with("unknown argument 'units' (Flatten takes no arguments)"),
        "{e}"
    );
    let e = bad(seq(json!({"type": "Dense", "units": 3, "nmae": "x"})));
    assert!(
        e.ends_with("unknown argument 'nmae' (did you mean 'name'?)"),
        "{e}"
    );
    let e = bad(seq(
        json!({"type": "Conv2d", "filters": 2, "kernel_size": 3}),
    ));
    assert_eq!(
        e,
        "layer '#0 (Conv2d)': invalid type: unknown layer type 'Conv2d' (did you mean 'Conv2D'?)"
    );
    let e = bad(seq(json!({"type": "Transformer"})));
    assert!(e.ends_with("unknown layer type 'Transformer'"), "{e}");
    // a required argument still reads as before once no key is unknown
    let e = bad(seq(json!({"type": "Conv2D", "kernel_size": 3})));
    assert_eq!(e, "layer '#0 (Conv2D)': invalid filters: is required");
}

#[test]
fn unknown_outputs_are_quoted_once() {
    let graph = |outputs: Value| {
        json!({"inputs": {"x": [4]}, "layers": [
            {"name": "a", "type": "Dense", "units": 4, "inputs": ["x"]}], "outputs": outputs})
    };
    let e = model_from_spec(&graph(json!(["z"])), 0)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "spec: outputs: unknown layer 'z'");
    let e = model_from_spec(&graph(json!([3])), 0)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "spec: outputs: expected layer names, found 3");
}

#[test]
fn the_argument_table_is_what_each_type_reads() {
    let required = |ty: &str| match ty {
        "Dense" => json!({"units": 1}),
        "Conv2D" => json!({"filters": 1, "kernel_size": 1}),
        "DepthwiseConv2D" => json!({"kernel_size": 1}),
        "Dropout" => json!({"rate": 0.5}),
        "Reshape" => json!({"target_shape": [1]}),
        "Activation" => json!({"activation": "relu"}),
        _ => json!({}),
    };
    for (ty, known) in LAYER_ARGUMENTS {
        let map = required(ty).as_object().unwrap().clone();
        let mut a = Args {
            layer: ty.to_string(),
            ty,
            map: &map,
            used: HashSet::new(),
        };
        read_layer(ty, ty, &mut a).unwrap();
        let mut used: Vec<&str> = a.used.into_iter().collect();
        let mut known = known.to_vec();
        used.sort_unstable();
        known.sort_unstable();
        assert_eq!(used, known, "{ty}");
    }
    assert!(known_arguments("Nope").is_none());
    assert_eq!(edit_distance("kernle_size", "kernel_size"), 1);
    assert_eq!(
        closest("act", ["activation", "use_bias"]),
        Some("activation")
    );
    assert_eq!(closest("colour", ["units", "activation"]), None);
    assert_eq!(closest("conv", ["Dense", "Conv2D"]), Some("Conv2D"));
    let huge = "x".repeat(1 << 20);
    assert_eq!(closest(&huge, ["units", "activation"]), None);
}

#[test]
fn sizes_that_cannot_be_served_are_refused_before_allocating() {
    let bad = |spec: Value| model_from_spec(&spec, 0).unwrap_err().to_string();
    let e = bad(
        json!({"input_shape": [1000000], "layers": [{"type": "Dense", "name": "wide", "units": 1000000}]}),
    );
    assert!(
        e.contains("layer 'wide': invalid units") && e.contains("over the limit"),
        "{e}"
    );
    let e = bad(json!({"input_shape": [5, 5, 256], "layers": [
        {"type": "DepthwiseConv2D", "name": "dw", "kernel_size": 127, "depth_multiplier": 255, "padding": "same"}]}));
    assert!(
        e.contains("layer 'dw': invalid kernel_size/depth_multiplier"),
        "{e}"
    );
    let e = bad(json!({"input_shape": [65536, 65536, 3], "layers": []}));
    assert!(
        e.contains("input_shape") && e.contains("elements per sample"),
        "{e}"
    );
    let e = bad(json!({"input_shape": [4], "layers": [{"type": "Dense", "units": 4294967296u64}]}));
    assert!(
        e.contains("invalid units") && e.contains("up to 16777216"),
        "{e}"
    );
    let e = bad(json!({"input_shape": [4, 4, 1], "layers": [
        {"type": "ZeroPadding2D", "name": "zp", "padding": [[1, 1], [1, 9007199254740993u64]]}]}));
    assert!(e.contains("layer 'zp': invalid padding"), "{e}");
    // 1e308 is a fine f64 but infinite as the f32 a layer keeps
    let e = bad(serde_json::from_str(
        r#"{"input_shape": [4], "layers": [{"type": "BatchNormalization", "name": "bn", "epsilon": 1e308}]}"#,
    ).unwrap());
    assert!(
        e.contains("layer 'bn': invalid epsilon: expected a finite"),
        "{e}"
    );
}

#[test]
fn default_names_skip_explicit_ones_and_round_trip() {
    let spec = json!({"name": "s", "input_shape": [4], "layers": [
        {"type": "Dense", "units": 3},
        {"type": "Dense", "units": 3, "name": "dense_1"},
        {"type": "Dense", "units": 2}]});
    let m = model_from_spec(&spec, 0).unwrap();
    let names: Vec<&str> = m.layers().iter().map(|l| l.name()).collect();
    assert_eq!(names, vec!["dense", "dense_1", "dense_2"]);
    let again = model_from_spec(&m.to_spec(), 0).unwrap();
    assert_eq!(again.count_params(), m.count_params());
    assert_eq!(again.to_spec(), m.to_spec());
}
