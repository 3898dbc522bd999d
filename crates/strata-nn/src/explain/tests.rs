use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::layers::testing::build;
use crate::model::model_from_spec;

/// Each layer's explanation by layer name.
fn explained(spec: Value) -> HashMap<String, Description> {
    model_from_spec(&spec, 0)
        .unwrap()
        .explain()
        .into_iter()
        .map(|e| (e.name, e.description))
        .collect()
}

#[test]
fn dense_head_of_resnet50() {
    let mut d = Dense::new(3).activation(Activation::Softmax).named("dense");
    build(&mut d, &[&[2048]]).unwrap();
    let e = describe_dense(&d, &[vec![2048]], &[3]);
    assert_eq!(e.operation, "y = softmax(x · W + b)");
    assert_eq!(
        e.shapes,
        "x (None, 2048) · W (2048, 3) + b (3,) -> (None, 3)"
    );
    assert_eq!(e.params, "2048*3 + 3 = 6,147");
    assert_eq!(thousands(23_567_299), "23,567,299");
}

#[test]
fn mnist_cnn_dropout_and_flatten_give_their_arguments() {
    let e = explained(
        json!({"name": "mnist_cnn", "input_shape": [28, 28, 1], "layers": [
        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dropout", "rate": 0.5},
        {"type": "Dense", "units": 10, "activation": "softmax"}]}),
    );
    let f = &e["flatten"];
    assert_eq!(
        f.operation,
        "flattens each sample's (5, 5, 64) values into one vector of 1600 = 5*5*64, in NHWC order: the channel varies fastest, then the column, then the row"
    );
    assert_eq!(f.shapes, "(None, 5, 5, 64) -> (None, 1600)");
    assert_eq!(f.params, "0 (no weights)");
    assert_eq!(
        f.notes[0],
        "value (h, w, c) goes to position (h*5 + w)*64 + c"
    );
    let d = &e["dropout"];
    assert_eq!(
        d.operation,
        "in training, sets each value to 0 with probability 0.5 (rate) and scales the others by 1/(1 - 0.5) = 2; at inference (evaluate, predict) it is the identity, as in Keras"
    );
    assert_eq!(d.shapes, "(None, 1600) -> (None, 1600)");
    assert_eq!(
        d.notes[1],
        "about 800 of the 1,600 values of a sample are zeroed at each training step, a new random choice each time"
    );
    let c = &e["conv2d"];
    assert_eq!(
        c.operation,
        "32 kernels, each 3x3x1 (a kernel spans the 1 input channel), slide over the image with strides (1, 1), padding \"valid\" (no padding), then relu"
    );
    assert!(c
        .notes
        .contains(&"output height and width: (28 - 3) / 1 + 1 = 26".to_string()));
    let p = &e["max_pooling2d_1"];
    assert_eq!(
        p.operation,
        "the largest value of each 2x2 window (pool_size (2, 2)), per channel, moving with strides (2, 2), padding \"valid\" (no padding)"
    );
    assert_eq!(
        p.notes[0],
        "output height and width: (11 - 2) / 2 + 1 = 5, rounded down: the last row and the last column of the input fall in no window"
    );
    let rate = |r: f32| describe_dropout(r, &[vec![10]], &[10]).operation;
    assert!(rate(0.2).contains("1/(1 - 0.2) = 1.25"), "{}", rate(0.2));
    assert_eq!(
        rate(0.0),
        "dropout with rate 0: the identity, in training and at inference"
    );
}

#[test]
fn every_layer_type_is_explained_with_its_arguments() {
    let mut e = explained(json!({"input_shape": [8, 8, 3], "layers": [
        {"type": "ZeroPadding2D", "padding": [[1, 2], [0, 1]]},
        {"type": "Conv2D", "name": "same", "filters": 1, "kernel_size": 3, "padding": "same", "strides": 2},
        {"type": "Conv2D", "name": "dilated", "filters": 4, "kernel_size": 3, "padding": [[1, 1], [1, 1]], "dilation_rate": 2, "use_bias": false},
        {"type": "DepthwiseConv2D", "name": "dw", "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "DepthwiseConv2D", "name": "dw2", "kernel_size": 3, "depth_multiplier": 2, "use_bias": false},
        {"type": "AveragePooling2D", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "BatchNormalization", "momentum": 0.9, "epsilon": 0.00001, "center": false},
        {"type": "Activation", "activation": "tanh"},
        {"type": "ReLU", "max_value": 6, "negative_slope": 0.1},
        {"type": "GlobalMaxPooling2D"},
        {"type": "Reshape", "target_shape": [-1, 4]},
        {"type": "Softmax", "axis": -1},
        {"type": "Flatten"}]}));
    e.extend(explained(json!({"inputs": {"x": [6]}, "layers": [
        {"name": "a", "type": "Dense", "units": 1, "inputs": ["x"]},
        {"name": "b", "type": "Dense", "units": 1, "use_bias": false, "inputs": ["x"]},
        {"name": "sum", "type": "Add", "inputs": ["a", "b"]},
        {"name": "prod", "type": "Multiply", "inputs": ["a", "b", "sum"]},
        {"name": "cat", "type": "Concatenate", "inputs": ["a", "prod"]},
        {"name": "mix", "type": "Blend", "inputs": ["a", "b"]},
        {"name": "probs", "type": "Activation", "activation": "softmax", "inputs": ["cat"]},
        {"name": "id", "type": "ReLU", "inputs": ["cat"]}],
        "outputs": ["mix", "probs", "id"]})));
    e.extend(explained(json!({"input_shape": [4, 4, 1], "layers": [
        {"type": "Conv2D", "name": "one", "filters": 2, "kernel_size": 1},
        {"type": "GlobalAveragePooling2D", "name": "gap", "keepdims": true}]})));
    for (name, d) in &e {
        assert!(!d.operation.ends_with(" layer"), "{name}: {}", d.operation);
    }
    let op = |n: &str| e[n].operation.clone();
    assert_eq!(
        op("zero_padding2d"),
        "adds zeros around each feature map: 1 row above, 2 rows below, 0 columns on the left, 1 column on the right"
    );
    assert_eq!(
        e["zero_padding2d"].notes[0],
        "height 8 + 1 + 2 = 11, width 8 + 0 + 1 = 9; the 3 channels are unchanged"
    );
    assert_eq!(
        op("same"),
        "1 kernel, 3x3x3 (a kernel spans all 3 input channels), slides over the image with strides (2, 2), padding \"same\" (for this 11x9 input: 1 on every side)"
    );
    assert!(e["same"]
        .notes
        .contains(&"output height: ceil(11 / 2) = 6; width: ceil(9 / 2) = 5".to_string()));
    assert_eq!(
        op("dilated"),
        "4 kernels, each 3x3x1 (a kernel spans the 1 input channel), slide over the image with strides (1, 1), dilation_rate (2, 2) (each 3x3 kernel covers a 5x5 window, with gaps), explicit padding (1 on every side)"
    );
    assert_eq!(
        op("dw"),
        "per-channel convolution: each of the 4 input channels gets its own 3x3 kernel and channels are not mixed; the kernels slide with strides (1, 1), padding \"same\" (for this 4x3 input: 1 on every side), then relu"
    );
    assert_eq!(
        e["dw"].shapes,
        "x (None, 4, 3, 4) * W (3, 3, 4, 1) + b (4,) -> (None, 4, 3, 4)"
    );
    assert_eq!(e["dw"].params, "3*3*4*1 + 4 = 40");
    assert_eq!(
        e["dw"].notes[0],
        "output channel c comes from input channel c alone; each output value sees 3*3 = 9 inputs"
    );
    assert!(op("dw2").contains("its own 2 3x3 kernels (depth_multiplier 2)"));
    assert_eq!(
        e["dw2"].shapes,
        "x (None, 4, 3, 4) * W (3, 3, 4, 2) -> (None, 2, 1, 8)"
    );
    assert_eq!(
        op("average_pooling2d"),
        "the mean of each 3x3 window (pool_size (3, 3)), per channel, moving with strides (2, 2), padding \"same\" (for this 2x1 input: top 0, bottom 1, left 1, right 1)"
    );
    assert!(e["average_pooling2d"].notes.contains(
        &"the mean is over the real cells of each window: padding cells are not counted"
            .to_string()
    ));
    let bn = &e["batch_normalization"];
    assert_eq!(
        bn.operation,
        "y = gamma * (x - mean) / sqrt(var + 0.00001) per channel (8 channels normalised; epsilon 0.00001)"
    );
    assert_eq!(
        bn.params,
        "3*8 = 24 (gamma trainable; moving_mean, moving_variance not)"
    );
    assert_eq!(
        bn.notes[0],
        "training (fit): mean and var are the batch's own per-channel statistics, and the moving ones follow them with momentum 0.9: moving = 0.9 * moving + 0.1 * batch"
    );
    assert!(bn.notes[1].starts_with(
        "inference (evaluate, predict): mean and var are moving_mean and moving_variance"
    ));
    assert_eq!(
        op("activation"),
        "activation \"tanh\", element-wise: y = tanh(x)"
    );
    assert_eq!(
        op("re_lu"),
        "ReLU with max_value 6, negative_slope 0.1, element-wise: y = min(x, 6) where x > 0, else 0.1 * x"
    );
    assert_eq!(
        op("id"),
        "ReLU, element-wise: y = max(x, 0) (no max_value, negative_slope 0, threshold 0)"
    );
    assert_eq!(
        op("global_max_pooling2d"),
        "the largest value over height and width per channel: y_c = max_ij x_ijc"
    );
    assert_eq!(
        op("reshape"),
        "rearranges each sample's 8 values into target_shape (-1, 4), resolved to (2, 4), keeping their order (row-major, as NHWC: the last axis varies fastest)"
    );
    assert_eq!(e["reshape"].shapes, "(None, 8) -> (None, 2, 4)");
    assert_eq!(
        op("softmax"),
        "softmax over axis -1 (size 4): y_i = exp(x_i) / sum_j exp(x_j)"
    );
    assert_eq!(op("sum"), "element-wise sum of its 2 inputs: y = x1 + x2");
    assert_eq!(e["sum"].shapes, "(None, 1), (None, 1) -> (None, 1)");
    assert_eq!(
        op("prod"),
        "element-wise product of its 3 inputs: y = x1 * x2 * x3"
    );
    assert_eq!(op("cat"), "joins its 2 inputs along axis -1 (the features)");
    assert_eq!(
        e["cat"].notes[0],
        "sizes along axis -1: 1 + 1 = 2; every other axis must match"
    );
    assert!(op("mix").contains("s = sigmoid(alpha)"));
    assert_eq!(
        op("probs"),
        "activation \"softmax\" over the last axis: y_i = exp(x_i) / sum_j exp(x_j)"
    );
    assert_eq!(
        op("gap"),
        "the mean over height and width per channel: y_c = (1/(4*4)) * sum_ij x_ijc"
    );
    assert_eq!(
        e["gap"].notes,
        vec![
            "each of the 2 channels becomes one number, whatever the image size".to_string(),
            "keepdims: height and width stay in the output, as 1x1".to_string()
        ]
    );
}

#[test]
fn counts_agree_with_their_nouns() {
    let e = explained(json!({"inputs": {"x": [1]}, "layers": [
        {"name": "a", "type": "Dense", "units": 1, "activation": "softmax", "inputs": ["x"]},
        {"name": "b", "type": "Dense", "units": 3, "inputs": ["x"]}],
        "outputs": ["a", "b"]}));
    assert_eq!(
        e["a"].notes[0],
        "the 1 output is a weighted sum of the 1 input feature"
    );
    assert!(e["a"].notes[1].starts_with("softmax over a single score is always 1"));
    assert_eq!(
        e["b"].notes[0],
        "each of the 3 outputs is a weighted sum of the 1 input feature"
    );
    let e = explained(json!({"input_shape": [3, 3, 1], "layers": [
        {"type": "Conv2D", "name": "c", "filters": 1, "kernel_size": 1},
        {"type": "DepthwiseConv2D", "name": "d", "kernel_size": 1},
        {"type": "ZeroPadding2D", "name": "z", "padding": 1},
        {"type": "GlobalAveragePooling2D", "name": "g"}]}));
    assert!(e["c"].operation.starts_with(
        "1 kernel, 1x1x1 (a kernel spans the 1 input channel), slides over the image"
    ));
    assert_eq!(
        e["c"].notes[0],
        "stored as (1, 1, 1, 1); each output value sees 1*1*1 = 1 input"
    );
    assert!(e["c"]
        .notes
        .iter()
        .any(|n| n.ends_with("the same (1, 1) matrix at each of the 9 positions")));
    assert!(e["d"]
        .operation
        .starts_with("per-channel convolution: the 1 input channel gets its own 1x1 kernel"));
    assert_eq!(
        e["z"].operation,
        "adds a border of 1 zero on every side of each feature map (padding ((1, 1), (1, 1)))"
    );
    assert!(e["z"].notes[0].ends_with("the 1 channel is unchanged"));
    assert_eq!(
        e["g"].notes[0],
        "the 1 channel becomes one number, whatever the image size"
    );
    assert_eq!(count(1, "filter", "filters"), "1 filter");
    assert_eq!(count(2, "filter", "filters"), "2 filters");
}
