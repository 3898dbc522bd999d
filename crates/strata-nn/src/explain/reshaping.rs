//! Layers without weights that move or combine values: Flatten, Reshape,
//! Add/Multiply, Concatenate, ZeroPadding2D.

use super::*;

pub(crate) fn describe_flatten(inputs: &[Vec<usize>], output: &[usize]) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let n: usize = input.iter().product();
    let shapes = format!("{} -> {}", batch_shape(&input), batch_shape(output));
    let dims = input
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("*");
    let mut d = match input.len() {
        0 | 1 => {
            return Description::parameter_free(
                "each sample is already a vector: the identity",
                shapes,
            )
        }
        3 => {
            let mut d = Description::parameter_free(
                format!(
                    "flattens each sample's {} values into one vector of {n} = {dims}, in NHWC order: the channel varies fastest, then the column, then the row",
                    tuple(&input)
                ),
                shapes,
            );
            d.notes.push(format!(
                "value (h, w, c) goes to position (h*{} + w)*{} + c",
                input[1], input[2]
            ));
            d
        }
        _ => Description::parameter_free(
            format!(
                "flattens each sample's {} values into one vector of {n} = {dims}, in row-major order: the last axis varies fastest",
                tuple(&input)
            ),
            shapes,
        ),
    };
    d.notes
        .push("no weights and no arithmetic: only the shape changes".into());
    d
}

pub(crate) fn describe_reshape(
    target_shape: &[isize],
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let n: usize = inputs.first().map(|s| s.iter().product()).unwrap_or(0);
    let target = signed_tuple(target_shape);
    let resolved = if target_shape.contains(&-1) {
        format!("target_shape {target}, resolved to {}", tuple(output))
    } else {
        format!("target_shape {target}")
    };
    let mut d = Description::parameter_free(
        format!(
            "rearranges each sample's {} into {resolved}, keeping their order (row-major, as NHWC: the last axis varies fastest)",
            count(n, "value", "values")
        ),
        format!("{} -> {}", ins(inputs), batch_shape(output)),
    );
    d.notes
        .push("no weights and no arithmetic: only the shape changes".into());
    d
}

/// Add (`sum` true) and Multiply.
pub(crate) fn describe_merge(sum: bool, inputs: &[Vec<usize>], output: &[usize]) -> Description {
    let n = inputs.len();
    let (what, op) = if sum {
        ("sum", " + ")
    } else {
        ("product", " * ")
    };
    let terms = (1..=n)
        .map(|i| format!("x{i}"))
        .collect::<Vec<_>>()
        .join(op);
    let mut d = Description::parameter_free(
        format!(
            "element-wise {what} of its {}: y = {terms}",
            count(n, "input", "inputs")
        ),
        format!("{} -> {}", ins(inputs), batch_shape(output)),
    );
    d.notes.push(format!(
        "the inputs have the same shape, {}",
        batch_shape(output)
    ));
    d.notes.push(if sum {
        "the gradient reaches every input unchanged: the skip path of a residual block".into()
    } else {
        "the gradient to each input is the output gradient times the other inputs".into()
    });
    d
}

pub(crate) fn describe_concatenate(
    axis: isize,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let first = inputs.first().cloned().unwrap_or_default();
    let rank = first.len() as isize + 1;
    let a = if axis < 0 { axis + rank } else { axis };
    let named = match (first.len(), a) {
        (3, 1) => " (the height)",
        (3, 2) => " (the width)",
        (3, 3) => " (the channels)",
        (1, 1) => " (the features)",
        _ => "",
    };
    let mut d = Description::parameter_free(
        format!(
            "joins its {} along axis {axis}{named}",
            count(inputs.len(), "input", "inputs")
        ),
        format!("{} -> {}", ins(inputs), batch_shape(output)),
    );
    if a >= 1 && a < rank {
        let i = a as usize - 1;
        let sizes: Vec<String> = inputs
            .iter()
            .filter_map(|s| s.get(i).map(|d| d.to_string()))
            .collect();
        d.notes.push(format!(
            "sizes along axis {axis}: {} = {}; every other axis must match",
            sizes.join(" + "),
            output.get(i).copied().unwrap_or(0)
        ));
    }
    d
}

pub(crate) fn describe_zero_padding(
    padding: ((usize, usize), (usize, usize)),
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let ((t, b), (l, r)) = padding;
    let input = inputs.first().cloned().unwrap_or_default();
    let operation = if t == b && b == l && l == r {
        format!(
            "adds a border of {} on every side of each feature map (padding (({t}, {b}), ({l}, {r})))",
            count(t, "zero", "zeros")
        )
    } else {
        format!(
            "adds zeros around each feature map: {} above, {} below, {} on the left, {} on the right",
            count(t, "row", "rows"),
            count(b, "row", "rows"),
            count(l, "column", "columns"),
            count(r, "column", "columns")
        )
    };
    let mut d = Description::parameter_free(
        operation,
        format!("{} -> {}", batch_shape(&input), batch_shape(output)),
    );
    if input.len() == 3 {
        d.notes.push(format!(
            "height {} + {t} + {b} = {}, width {} + {l} + {r} = {}; {} unchanged",
            input[0],
            input[0] + t + b,
            input[1],
            input[1] + l + r,
            if input[2] == 1 {
                "the 1 channel is".to_string()
            } else {
                format!("the {} channels are", input[2])
            }
        ));
    }
    d
}
