//! What each layer computes, in words and as shape algebra with the model's
//! real shapes, and how its parameter count arises (`strata explain`).

use serde::Serialize;

use crate::error::batch_shape;
use crate::layers::{Blend, Dense};

/// The explanation of one layer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Description {
    /// The operation in plain words.
    pub operation: String,
    /// The formula with real shapes, e.g. `x (None, 2048) · W (2048, 3) + b (3,) -> (None, 3)`.
    pub shapes: String,
    /// How the parameter count arises, e.g. `2048*3 + 3 = 6,147`.
    pub params: String,
    /// Further facts (what a 1x1 convolution is, the current blend weight, ...).
    pub notes: Vec<String>,
}

/// `6147` -> `6,147`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `(3,)`, `(7, 7, 8, 16)`.
pub fn tuple(shape: &[usize]) -> String {
    strata_core::fmt_shape(shape)
}

fn ins(inputs: &[Vec<usize>]) -> String {
    inputs
        .iter()
        .map(|s| batch_shape(s))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Description {
    /// For layers without a dedicated explanation.
    pub fn generic(class: &str, inputs: &[Vec<usize>], output: &[usize]) -> Self {
        Description {
            operation: format!("{class} layer"),
            shapes: format!("{} -> {}", ins(inputs), batch_shape(output)),
            params: "0".into(),
            notes: Vec::new(),
        }
    }
    /// A layer without weights.
    pub fn parameter_free(operation: impl Into<String>, shapes: impl Into<String>) -> Self {
        Description {
            operation: operation.into(),
            shapes: shapes.into(),
            params: "0 (no weights)".into(),
            notes: Vec::new(),
        }
    }
}

pub(crate) fn describe_dense(d: &Dense, inputs: &[Vec<usize>], output: &[usize]) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let fin = input.last().copied().unwrap_or(0);
    let units = d.units;
    let act = d.activation;
    let z = if d.use_bias { "x · W + b" } else { "x · W" };
    let operation = match act {
        crate::activations::Activation::Linear => format!("y = {z}"),
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
        "each of the {units} outputs is a weighted sum of all {fin} input features{}",
        if input.len() > 1 {
            ", applied independently at every position of the leading axes"
        } else {
            ""
        }
    )];
    if act == crate::activations::Activation::Softmax {
        notes.push(format!(
            "softmax turns the {units} scores into probabilities: exp(z_i) / sum_j exp(z_j), each in [0, 1], summing to 1 (multinomial logistic regression on x)"
        ));
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
        operation: "y = s * a + (1 - s) * b with s = sigmoid(alpha), a learned scalar mix".into(),
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

pub(crate) fn describe_softmax(
    _name: &str,
    axis: isize,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    Description {
        operation: format!("softmax over axis {axis}: y_i = exp(x_i) / sum_j exp(x_j)"),
        shapes: format!("{} -> {}", ins(inputs), batch_shape(output)),
        params: "0 (no weights)".into(),
        notes: vec![
            "outputs lie in [0, 1] and sum to 1 along the axis: a probability distribution".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activations::Activation;
    use crate::layers::testing::build;

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
}

pub(crate) fn describe_conv2d(
    c: &crate::layers::Conv2D,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let cin = input.get(2).copied().unwrap_or(0);
    let (kh, kw) = c.kernel_size;
    let f = c.filters;
    let g = c.groups.max(1);
    let cg = cin / g;
    let fan = kh * kw * cg;
    let total = fan * f + if c.use_bias { f } else { 0 };
    let act = match c.activation {
        crate::activations::Activation::Linear => String::new(),
        a => format!(", then {}", a.name()),
    };
    let operation = format!(
        "{f} kernels, each {kh}x{kw}x{cg} (a kernel spans all {cg} input channels{}), slide over the image with strides {:?}{act}",
        if g > 1 { format!(" of its group; {g} groups") } else { String::new() },
        c.strides
    );
    let shapes = format!(
        "x {} * W ({kh}, {kw}, {cg}, {f}){} -> {}",
        batch_shape(&input),
        if c.use_bias {
            format!(" + b ({f},)")
        } else {
            String::new()
        },
        batch_shape(output)
    );
    let params = if c.use_bias {
        format!("{kh}*{kw}*{cg}*{f} + {f} = {}", thousands(total))
    } else {
        format!("{kh}*{kw}*{cg}*{f} = {}", thousands(total))
    };
    let mut notes = vec![format!(
        "stored as ({kh}, {kw}, {cg}, {f}); each output value sees {kh}*{kw}*{cg} = {fan} inputs"
    )];
    if kh == 1 && kw == 1 && g == 1 {
        notes.push(format!(
            "a 1x1 convolution is a Dense layer applied to the {cin}-channel vector of every pixel (cross-channel parametric pooling): the same ({cin}, {f}) matrix at each of the {} positions",
            output.first().copied().unwrap_or(0) * output.get(1).copied().unwrap_or(0)
        ));
    }
    if output.len() == 3 && input.len() == 3 {
        notes.push(format!(
            "multiply-adds per image: {} * {} = {}",
            thousands(output[0] * output[1] * f),
            fan,
            thousands(output[0] * output[1] * f * fan)
        ));
    }
    Description {
        operation,
        shapes,
        params,
        notes,
    }
}

pub(crate) fn describe_depthwise(
    d: &crate::layers::DepthwiseConv2D,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let c = input.get(2).copied().unwrap_or(0);
    let (kh, kw) = d.kernel_size;
    let m = d.depth_multiplier;
    let total = kh * kw * c * m + if d.use_bias { c * m } else { 0 };
    Description {
        operation: format!("per-channel convolution: each of the {c} input channels gets its own {m} {kh}x{kw} kernel(s); channels are not mixed"),
        shapes: format!("x {} * W ({kh}, {kw}, {c}, {m}) -> {}", batch_shape(&input), batch_shape(output)),
        params: if d.use_bias {
            format!("{kh}*{kw}*{c}*{m} + {} = {}", c * m, thousands(total))
        } else {
            format!("{kh}*{kw}*{c}*{m} = {}", thousands(total))
        },
        notes: vec![format!("output channel c*{m} + k comes from input channel c alone; each output value sees {kh}*{kw} = {} inputs", kh * kw)],
    }
}

pub(crate) fn describe_pooling(
    class: &str,
    pool: (usize, usize),
    strides: (usize, usize),
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let what = if class.starts_with("Max") {
        "the largest value"
    } else {
        "the mean"
    };
    Description::parameter_free(
        format!(
            "{what} of each {}x{} window, per channel, moving by {:?}",
            pool.0, pool.1, strides
        ),
        format!("{} -> {}", ins(inputs), batch_shape(output)),
    )
}

pub(crate) fn describe_gap(inputs: &[Vec<usize>], output: &[usize]) -> Description {
    let input = inputs.first().cloned().unwrap_or_default();
    let (h, w) = (
        input.first().copied().unwrap_or(0),
        input.get(1).copied().unwrap_or(0),
    );
    let mut d = Description::parameter_free(
        format!("the mean over height and width per channel: y_c = (1/({h}*{w})) * sum_ij x_ijc"),
        format!("{} -> {}", batch_shape(&input), batch_shape(output)),
    );
    d.notes.push(format!(
        "each of the {} channels becomes one number, whatever the image size",
        output.last().copied().unwrap_or(0)
    ));
    d
}

pub(crate) fn describe_batchnorm(
    epsilon: f32,
    momentum: f32,
    inputs: &[Vec<usize>],
    output: &[usize],
) -> Description {
    let c = inputs.first().and_then(|s| s.last().copied()).unwrap_or(0);
    Description {
        operation: format!("y = gamma * (x - mean) / sqrt(var + {epsilon}) + beta per channel; training uses the batch statistics and moves the moving ones by (1 - {momentum})"),
        shapes: format!("{} -> {}", ins(inputs), batch_shape(output)),
        params: format!("4*{c} = {} (gamma, beta trainable; moving_mean, moving_variance not)", thousands(4 * c)),
        notes: Vec::new(),
    }
}

/// The explanation of one layer of a model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerExplanation {
    pub name: String,
    #[serde(rename = "type")]
    pub class: String,
    #[serde(flatten)]
    pub description: Description,
}

impl crate::model::Model {
    /// Every layer's explanation with the shapes of its first application.
    pub fn explain(&self) -> Vec<LayerExplanation> {
        self.layers()
            .iter()
            .enumerate()
            .filter_map(|(li, l)| {
                let node = self.nodes().iter().find(|n| n.layer == li)?;
                let inputs: Vec<Vec<usize>> = node
                    .inputs
                    .iter()
                    .filter_map(|s| self.shape_of(*s).ok())
                    .collect();
                Some(LayerExplanation {
                    name: l.name().to_string(),
                    class: l.class_name().to_string(),
                    description: l.describe(&inputs, &node.output_shape),
                })
            })
            .collect()
    }
}

impl std::fmt::Display for LayerExplanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} ({})", self.name, self.class)?;
        writeln!(f, "  what:   {}", self.description.operation)?;
        writeln!(f, "  shapes: {}", self.description.shapes)?;
        writeln!(f, "  params: {}", self.description.params)?;
        for n in &self.description.notes {
            writeln!(f, "  note:   {n}")?;
        }
        Ok(())
    }
}
