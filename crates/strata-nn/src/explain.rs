//! What each layer computes, in words and as shape algebra with the model's
//! real shapes, and how its parameter count arises (`strata explain`).

use serde::Serialize;

use strata_core::ops::{Geometry2d, Padding};

use crate::activations::Activation;
use crate::error::batch_shape;
use crate::layers::{Blend, Dense, Layer};

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

/// [`thousands`] of a 64-bit count.
fn thousands_u64(n: u64) -> String {
    thousands(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Bytes in decimal units, as torchinfo prints them: `3.21 MB`, `6.40 KB`, `40 B`.
pub(crate) fn decimal_bytes(b: u64) -> String {
    if b >= 1_000_000 {
        format!("{:.2} MB", b as f64 / 1e6)
    } else if b >= 1_000 {
        format!("{:.2} KB", b as f64 / 1e3)
    } else {
        format!("{b} B")
    }
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

/// `1 filter`, `2 filters`: a count with its noun in the right number.
pub fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// `the 1 output` / `each of the 10 outputs` (either takes a singular verb).
fn each_of(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("the 1 {one}")
    } else {
        format!("each of the {n} {many}")
    }
}

/// `the 1 input channel` / `all 8 input channels`.
fn all_of(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("the 1 {one}")
    } else {
        format!("all {n} {many}")
    }
}

/// A float argument as a person writes it: `0.5`, `0.001`, `2`, `1.25`.
fn num(x: f32) -> String {
    let r = (f64::from(x) * 1e6).round() / 1e6;
    if r == 0.0 && x != 0.0 {
        format!("{x}")
    } else {
        format!("{r}")
    }
}

/// `(-1, 4)`, `(512,)`: a target shape as Keras prints it.
fn signed_tuple(shape: &[isize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `1 on every side` or `top 0, bottom 1, left 0, right 1`.
fn pads_words(top: usize, bottom: usize, left: usize, right: usize) -> String {
    if top == bottom && bottom == left && left == right {
        format!("{top} on every side")
    } else {
        format!("top {top}, bottom {bottom}, left {left}, right {right}")
    }
}

/// The size a `k` kernel dilated by `d` covers: `(k - 1) * d + 1`.
fn span(k: usize, d: usize) -> usize {
    k.saturating_sub(1)
        .saturating_mul(d.max(1))
        .saturating_add(1)
}

/// The sliding-window arguments of a convolution or pooling layer.
pub(crate) struct Window {
    pub kernel: (usize, usize),
    pub strides: (usize, usize),
    pub padding: Padding,
    pub dilation: (usize, usize),
}

impl Window {
    fn geometry(&self, input: &[usize]) -> Option<Geometry2d> {
        if input.len() != 3 {
            return None;
        }
        self.padding
            .resolve(
                "",
                (input[0], input[1]),
                self.kernel,
                self.strides,
                self.dilation,
            )
            .ok()
    }

    /// `padding "valid" (no padding)`, `padding "same" (for this 28x28 input:
    /// 1 on every side, ...)`, `explicit padding (top 3, ...)`.
    fn padding_words(&self, input: &[usize]) -> String {
        match self.padding {
            Padding::Valid => "padding \"valid\" (no padding)".into(),
            Padding::Same => match self.geometry(input) {
                Some(g) if g.unpadded() => format!(
                    "padding \"same\" (this {}x{} input needs no padding)",
                    g.in_h, g.in_w
                ),
                Some(g) => format!(
                    "padding \"same\" (for this {}x{} input: {})",
                    g.in_h,
                    g.in_w,
                    pads_words(g.pad_top, g.pad_bottom, g.pad_left, g.pad_right)
                ),
                None => "padding \"same\"".into(),
            },
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => format!(
                "explicit padding ({})",
                pads_words(top, bottom, left, right)
            ),
        }
    }

    /// `strides (2, 2)`, then the dilation and padding where they apply.
    fn stride_words(&self, input: &[usize], what: &str) -> String {
        let mut s = format!("strides {:?}", self.strides);
        if self.dilation != (1, 1) {
            s.push_str(&format!(
                ", dilation_rate {:?} (each {}x{} {what} covers a {}x{} window, with gaps)",
                self.dilation,
                self.kernel.0,
                self.kernel.1,
                span(self.kernel.0, self.dilation.0),
                span(self.kernel.1, self.dilation.1)
            ));
        }
        s.push_str(", ");
        s.push_str(&self.padding_words(input));
        s
    }

    /// How the output's height and width arise, e.g.
    /// `output height and width: (28 - 3) / 1 + 1 = 26`.
    fn output_size_note(&self, input: &[usize]) -> Option<String> {
        let g = self.geometry(input)?;
        // the formula along one axis, and how many trailing cells no window reads
        let axis = |i: usize, pads: usize, k: usize, s: usize, d: usize, o: usize| {
            if self.padding == Padding::Same {
                return (format!("ceil({i} / {s}) = {o}"), 0);
            }
            let w = span(k, d);
            let padded = if pads > 0 {
                format!("{i} + {pads}")
            } else {
                i.to_string()
            };
            let rest = i.saturating_add(pads).saturating_sub(w) % s;
            (format!("({padded} - {w}) / {s} + 1 = {o}"), rest)
        };
        let (h, rest_h) = axis(g.in_h, g.pad_top + g.pad_bottom, g.kh, g.sh, g.dh, g.out_h);
        let (w, rest_w) = axis(g.in_w, g.pad_left + g.pad_right, g.kw, g.sw, g.dw, g.out_w);
        let mut note = if h == w {
            format!("output height and width: {h}")
        } else {
            format!("output height: {h}; width: {w}")
        };
        let last = |n: usize, one: &str, many: &str| match n {
            0 => None,
            1 => Some(format!("the last {one}")),
            n => Some(format!("the last {n} {many}")),
        };
        let unread: Vec<String> = [
            last(rest_h, "row", "rows"),
            last(rest_w, "column", "columns"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !unread.is_empty() {
            note.push_str(&format!(
                ", rounded down: {} of the {}input {} in no window",
                unread.join(" and "),
                if g.unpadded() { "" } else { "padded " },
                if unread.len() == 1 && rest_h.max(rest_w) == 1 {
                    "falls"
                } else {
                    "fall"
                }
            ));
        }
        Some(note)
    }
}

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

/// The size of `axis` (Keras numbering, batch axis 0) of a per-sample shape.
fn axis_size(input: &[usize], axis: isize) -> Option<usize> {
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
    let window = Window {
        kernel: c.kernel_size,
        strides: c.strides,
        padding: c.padding,
        dilation: c.dilation_rate,
    };
    let act = match c.activation {
        Activation::Linear => String::new(),
        a => format!(", then {}", a.name()),
    };
    let kernels = if f == 1 {
        format!("1 kernel, {kh}x{kw}x{cg}")
    } else {
        format!("{f} kernels, each {kh}x{kw}x{cg}")
    };
    let operation = format!(
        "{kernels} (a kernel spans {}{}), slide{} over the image with {}{act}",
        all_of(cg, "input channel", "input channels"),
        if g > 1 {
            format!(" of its group; {g} groups")
        } else {
            String::new()
        },
        if f == 1 { "s" } else { "" },
        window.stride_words(&input, "kernel"),
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
        "stored as ({kh}, {kw}, {cg}, {f}); each output value sees {kh}*{kw}*{cg} = {}",
        count(fan, "input", "inputs")
    )];
    notes.extend(window.output_size_note(&input));
    if kh == 1 && kw == 1 && g == 1 {
        let positions = output.first().copied().unwrap_or(0) * output.get(1).copied().unwrap_or(0);
        notes.push(format!(
            "a 1x1 convolution is a Dense layer applied to the {cin}-channel vector of every pixel (cross-channel parametric pooling): the same ({cin}, {f}) matrix at {}",
            if positions == 1 { "the 1 position".to_string() } else { format!("each of the {positions} positions") }
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
    let window = Window {
        kernel: d.kernel_size,
        strides: d.strides,
        padding: d.padding,
        dilation: d.dilation_rate,
    };
    let own = if m == 1 {
        format!("its own {kh}x{kw} kernel")
    } else {
        format!("its own {m} {kh}x{kw} kernels (depth_multiplier {m})")
    };
    let act = match d.activation {
        Activation::Linear => String::new(),
        a => format!(", then {}", a.name()),
    };
    let mut notes = vec![format!(
        "{} comes from input channel c alone; each output value sees {kh}*{kw} = {}",
        if m == 1 {
            "output channel c".to_string()
        } else {
            format!("output channel c*{m} + k (k < {m})")
        },
        count(kh * kw, "input", "inputs")
    )];
    notes.extend(window.output_size_note(&input));
    Description {
        operation: format!(
            "per-channel convolution: {} gets {own} and channels are not mixed; the kernels slide with {}{act}",
            each_of(c, "input channel", "input channels"),
            window.stride_words(&input, "kernel"),
        ),
        shapes: format!(
            "x {} * W ({kh}, {kw}, {c}, {m}){} -> {}",
            batch_shape(&input),
            if d.use_bias {
                format!(" + b ({},)", c * m)
            } else {
                String::new()
            },
            batch_shape(output)
        ),
        params: if d.use_bias {
            format!("{kh}*{kw}*{c}*{m} + {} = {}", c * m, thousands(total))
        } else {
            format!("{kh}*{kw}*{c}*{m} = {}", thousands(total))
        },
        notes,
    }
}

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

/// The explanation of one layer of a model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerExplanation {
    pub name: String,
    #[serde(rename = "type")]
    pub class: String,
    #[serde(flatten)]
    pub description: Description,
    /// Multiply-adds per sample (weighted layers only: `model/profile.rs`).
    pub macs: u64,
    /// The output's bytes per sample (float32).
    pub activation_bytes: u64,
    /// What one output value sees of the input (`model::Field`).
    #[serde(skip)]
    pub field: crate::model::Field,
    /// `[h, w]` input pixels one output value sees; `null` where it sees the
    /// whole input or there is no image.
    pub receptive_field: Option<[usize; 2]>,
    /// `[h, w]`: the input pixels between neighbouring output values' fields.
    pub jump: Option<[usize; 2]>,
}

impl crate::model::Model {
    /// Every layer's explanation with the shapes of its first application.
    pub fn explain(&self) -> Vec<LayerExplanation> {
        let profile = self.profile();
        self.layers()
            .iter()
            .enumerate()
            .filter_map(|(li, l)| {
                let at = self.nodes().iter().position(|n| n.layer == li)?;
                let node = &self.nodes()[at];
                let cost = profile.nodes.get(at).copied()?;
                let inputs: Vec<Vec<usize>> = node
                    .inputs
                    .iter()
                    .filter_map(|s| self.shape_of(*s).ok())
                    .collect();
                Some(LayerExplanation {
                    name: l.name().to_string(),
                    class: l.class_name().to_string(),
                    description: l.describe(&inputs, &node.output_shape),
                    macs: cost.macs,
                    activation_bytes: cost.activation_bytes,
                    field: cost.field,
                    receptive_field: cost.field.size(),
                    jump: cost.field.jump(),
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
        writeln!(
            f,
            "  multiply-adds:     {} per sample",
            thousands_u64(self.macs)
        )?;
        writeln!(
            f,
            "  activation memory: {} per sample ({} float32 values)",
            decimal_bytes(self.activation_bytes),
            thousands_u64(self.activation_bytes / 4)
        )?;
        let field = match self.field {
            crate::model::Field::Window { size, jump } => format!(
                "{}x{} input pixels, jump {}x{}",
                size[0], size[1], jump[0], jump[1]
            ),
            crate::model::Field::Global => {
                "global: each output value depends on the whole input".into()
            }
            crate::model::Field::NotSpatial => "- (no image input)".into(),
        };
        writeln!(f, "  receptive field:   {field}")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
}
