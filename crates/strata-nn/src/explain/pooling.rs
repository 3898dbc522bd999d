//! Max and average pooling, local and global.

use super::*;

pub(crate) fn describe_pooling(
    class: &str,
    window: Window,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let max = class.starts_with("Max");
    let what = if max { "the largest value" } else { "the mean" };
    let (ph, pw) = window.kernel;
    let (sh, sw) = window.strides;
    let mut d = Description::parameter_free(
        format!(
            "{what} of each {ph}x{pw} window (pool_size {:?}), per channel, moving with {}",
            window.kernel,
            window.stride_words(&input, "window")
        ),
        format!("{} -> {}", ins(inputs), batch_shape(output)),
    );
    d.notes.extend(window.output_size_note(&input));
    d.notes.push(if (sh, sw) == (ph, pw) {
        "the windows do not overlap".into()
    } else if sh <= ph && sw <= pw {
        "the windows overlap: a value can fall in several windows".into()
    } else {
        "the strides are larger than the windows: some values fall in no window".into()
    });
    let padded = window.geometry(&input).is_some_and(|g| !g.unpadded());
    if padded {
        d.notes.push(if max {
            "padding cells never win: they count as -inf".into()
        } else {
            "the mean is over the real cells of each window: padding cells are not counted".into()
        });
    }
    d
}

/// GlobalAveragePooling2D (`max` false) and GlobalMaxPooling2D.
pub(crate) fn describe_global_pooling(
    max: bool,
    keepdims: bool,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let (h, w) = (
        input.first().copied().unwrap_or(0),
        input.get(1).copied().unwrap_or(0),
    );
    let operation = if max {
        "the largest value over height and width per channel: y_c = max_ij x_ijc".to_string()
    } else {
        format!("the mean over height and width per channel: y_c = (1/({h}*{w})) * sum_ij x_ijc")
    };
    let mut d = Description::parameter_free(
        operation,
        format!("{} -> {}", batch_shape(&input), batch_shape(output)),
    );
    d.notes.push(format!(
        "{} becomes one number, whatever the image size",
        each_of(input.get(2).copied().unwrap_or(0), "channel", "channels")
    ));
    if keepdims {
        d.notes
            .push("keepdims: height and width stay in the output, as 1x1".into());
    }
    d
}
