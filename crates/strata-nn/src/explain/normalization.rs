//! BatchNormalization and Dropout: the layers that act differently while
//! training.

use super::*;

pub(crate) fn describe_batchnorm(
    b: &crate::layers::BatchNormalization,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let c = inputs.first().and_then(|s| s.last().copied()).unwrap_or(0);
    let eps = num(b.epsilon);
    let m = num(b.momentum);
    let gamma = if b.scale { "gamma * " } else { "" };
    let beta = if b.center { " + beta" } else { "" };
    let learned: Vec<&str> = [(b.scale, "gamma"), (b.center, "beta")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    let vectors = learned.len() + 2;
    let params = if learned.is_empty() {
        format!(
            "2*{c} = {} (moving_mean, moving_variance, not trainable)",
            thousands(2 * c)
        )
    } else {
        format!(
            "{vectors}*{c} = {} ({} trainable; moving_mean, moving_variance not)",
            thousands(vectors * c),
            learned.join(", ")
        )
    };
    let mut notes = vec![
        format!(
            "training (fit): mean and var are the batch's own per-channel statistics, and the moving ones follow them with momentum {m}: moving = {m} * moving + {} * batch",
            num(1.0 - b.momentum)
        ),
        "inference (evaluate, predict): mean and var are moving_mean and moving_variance, so the layer is a fixed per-channel scale and shift".into(),
    ];
    if !b.trainable() {
        notes.push(
            "this layer is frozen: it uses the moving statistics in training too, and they do not move"
                .into(),
        );
    }
    Description {
        operation: format!(
            "y = {gamma}(x - mean) / sqrt(var + {eps}){beta} per channel ({} normalised; epsilon {eps})",
            count(c, "channel", "channels")
        ),
        shapes: format!("{} -> {}", ins(inputs), batch_shape(output)),
        params,
        notes,
    }
}

pub(crate) fn describe_dropout(rate: f32, inputs: &[Vec<usize>], output: &[usize]) -> Description {
    let shapes = format!("{} -> {}", ins(inputs), batch_shape(output));
    if rate == 0.0 {
        return Description::parameter_free(
            "dropout with rate 0: the identity, in training and at inference",
            shapes,
        );
    }
    let r = num(rate);
    let mut d = Description::parameter_free(
        format!(
            "in training, sets each value to 0 with probability {r} (rate) and scales the others by 1/(1 - {r}) = {}; at inference (evaluate, predict) it is the identity, as in Keras",
            num(1.0 / (1.0 - rate))
        ),
        shapes,
    );
    d.notes.push(
        "the scaling keeps each value's expected size the same in training and at inference".into(),
    );
    let n: usize = inputs.first().map(|s| s.iter().product()).unwrap_or(0);
    if n > 0 {
        let dropped = (f64::from(rate) * n as f64).round() as usize;
        d.notes.push(format!(
            "about {} of the {} values of a sample are zeroed at each training step, a new random choice each time",
            thousands(dropped),
            thousands(n)
        ));
    }
    d
}
