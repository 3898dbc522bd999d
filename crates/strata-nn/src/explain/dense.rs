//! Dense and Blend: weighted sums over the last axis.

use super::*;

pub(crate) fn describe_dense(d: &Dense, inputs: &[Vec<usize>], output: &[usize]) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let fin = input.last().copied().unwrap_or(0);
    let units = d.units;
    let act = d.activation;
    let z = if d.use_bias { "x · W + b" } else { "x · W" };
    let operation = match act {
        Activation::Linear => format!("y = {z}"),
        a => format!("y = {}({z})", a.name()),
    };
    let b = if d.use_bias {
        format!(" + b ({units},)")
    } else {
        String::new()
    };
    let shapes = format!(
        "x {} · W ({fin}, {units}){b} -> {}",
        batch_shape(&input),
        batch_shape(output)
    );
    let total = fin * units + if d.use_bias { units } else { 0 };
    let params = if d.use_bias {
        format!("{fin}*{units} + {units} = {}", thousands(total))
    } else {
        format!("{fin}*{units} = {}", thousands(total))
    };
    let mut notes = vec![format!(
        "{} is a weighted sum of {}{}",
        each_of(units, "output", "outputs"),
        all_of(fin, "input feature", "input features"),
        if input.len() > 1 {
            ", applied independently at every position of the leading axes"
        } else {
            ""
        }
    )];
    if act == Activation::Softmax {
        notes.push(if units == 1 {
            "softmax over a single score is always 1: a one-unit classifier wants sigmoid".into()
        } else {
            format!(
            "softmax turns the {units} scores into probabilities: exp(z_i) / sum_j exp(z_j), each in [0, 1], summing to 1 (multinomial logistic regression on x)"
        )
        });
    }
    Description {
        operation,
        shapes,
        params,
        notes,
    }
}

pub(crate) fn describe_blend(b: &Blend, inputs: &[Vec<usize>], output: &[usize]) -> Description {
    let s = b.mix().unwrap_or(0.5);
    Description {
        operation: "y = s * a + (1 - s) * b with s = sigmoid(alpha), a learned scalar mix of its 2 inputs".into(),
        shapes: format!("{} -> {}", ins(inputs), batch_shape(output)),
        params: "1 (alpha, a scalar) = 1".into(),
        notes: vec![format!(
            "alpha = {:.6}, so sigmoid(alpha) = {:.6}: the first input gets weight {:.6}, the second {:.6}",
            (s / (1.0 - s)).ln(),
            s,
            s,
            1.0 - s
        )],
    }
}
