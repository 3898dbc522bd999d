//! Softmax, Activation and ReLU: element-wise and per-row functions.

use super::*;

/// The size of `axis` (Keras numbering, batch axis 0) of a per-sample shape.
pub(super) fn axis_size(input: &[usize], axis: isize) -> Option<usize> {
    let rank = input.len() as isize + 1;
    let a = if axis < 0 { axis + rank } else { axis };
    (a >= 1 && a < rank).then(|| input[a as usize - 1])
}

pub(crate) fn describe_softmax(
    _name: &str,
    axis: isize,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let size = axis_size(&input, axis)
        .map(|n| format!(" (size {n})"))
        .unwrap_or_default();
    Description {
        operation: format!("softmax over axis {axis}{size}: y_i = exp(x_i) / sum_j exp(x_j)"),
        shapes: format!("{} -> {}", ins(inputs), batch_shape(output)),
        params: "0 (no weights)".into(),
        notes: vec![
            "outputs lie in [0, 1] and sum to 1 along the axis: a probability distribution".into(),
        ],
    }
}

pub(crate) fn describe_activation(
    a: Activation,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let f = a.formula().replace('z', "x");
    let operation = match a {
        Activation::Linear => "activation \"linear\": the identity, y = x".to_string(),
        Activation::Softmax | Activation::LogSoftmax => {
            format!("activation \"{}\" over the last axis: y_i = {f}", a.name())
        }
        _ => format!("activation \"{}\", element-wise: y = {f}", a.name()),
    };
    let mut d = Description::parameter_free(
        operation,
        format!("{} -> {}", ins(inputs), batch_shape(output)),
    );
    if a == Activation::Softmax {
        d.notes.push(
            "outputs lie in [0, 1] and sum to 1 along the last axis: a probability distribution"
                .into(),
        );
    }
    d
}

pub(crate) fn describe_relu(
    max_value: Option<f32>,
    negative_slope: f32,
    threshold: f32,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let shapes = format!("{} -> {}", ins(inputs), batch_shape(output));
    if max_value.is_none() && negative_slope == 0.0 && threshold == 0.0 {
        return Description::parameter_free(
            "ReLU, element-wise: y = max(x, 0) (no max_value, negative_slope 0, threshold 0)",
            shapes,
        );
    }
    let t = num(threshold);
    let mut options = Vec::new();
    if let Some(m) = max_value {
        options.push(format!("max_value {}", num(m)));
    }
    if negative_slope != 0.0 {
        options.push(format!("negative_slope {}", num(negative_slope)));
    }
    if threshold != 0.0 {
        options.push(format!("threshold {t}"));
    }
    let above = match max_value {
        Some(m) => format!("min(x, {})", num(m)),
        None => "x".into(),
    };
    let below = match (negative_slope == 0.0, threshold == 0.0) {
        (true, _) => "0".to_string(),
        (false, true) => format!("{} * x", num(negative_slope)),
        (false, false) => format!("{} * (x - {t})", num(negative_slope)),
    };
    Description::parameter_free(
        format!(
            "ReLU with {}, element-wise: y = {above} where x > {t}, else {below}",
            options.join(", ")
        ),
        shapes,
    )
}
