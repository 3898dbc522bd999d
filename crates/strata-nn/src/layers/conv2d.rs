//! Conv2D: `filters` kernels, each spanning every input channel of its group,
//! stored as HWIO `(kh, kw, in_channels / groups, filters)`.

use serde_json::{Map, Value};
use strata_core::ops::{Conv2dConfig, Padding};
use strata_core::{CoreError, Precision, Rng, Tensor};

use super::dense::not_built;
use super::{expect_inputs, pair_json, Ctx, Layer, LayerBase};
use crate::activations::Activation;
use crate::error::{InLayer, NnError, Result};
use crate::initializers::Initializer;
use crate::weight::Weight;

pub struct Conv2D {
    base: LayerBase,
    pub filters: usize,
    pub kernel_size: (usize, usize),
    pub strides: (usize, usize),
    pub padding: Padding,
    pub dilation_rate: (usize, usize),
    pub groups: usize,
    pub activation: Activation,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub bias_initializer: Initializer,
    /// The layer's own policy (Keras's `dtype`), which wins over the
    /// model's; `None` follows the model.
    pub dtype: Option<Precision>,
    /// The model-wide policy, as the model last handed it down.
    model_precision: Precision,
    kernel: Option<Weight>,
    bias: Option<Weight>,
}

/// Resolves a window op's output size, naming the layer in errors: a window
/// larger than its (padded) input is one sentence with the window after
/// dilation, the input and what to change.
pub(crate) fn window_output(
    layer: &str,
    class: &str,
    input: &[usize],
    kernel: (usize, usize),
    strides: (usize, usize),
    padding: Padding,
    dilation: (usize, usize),
) -> Result<(usize, usize)> {
    if input.len() != 3 {
        return Err(NnError::shape(layer, class, "(None, H, W, C)", input));
    }
    let size_field = if class.ends_with("Pooling2D") {
        "pool_size"
    } else {
        "kernel_size"
    };
    padding
        .resolve(class, (input[0], input[1]), kernel, strides, dilation)
        .map(|g| (g.out_h, g.out_w))
        .map_err(|e| match e {
            CoreError::Argument { field, message, .. } => {
                let field = match field.as_str() {
                    "kernel size" => size_field,
                    "dilation" => "dilation_rate",
                    other => other,
                };
                NnError::config(layer, field, message)
            }
            _ => window_too_large(layer, class, input, kernel, padding, dilation, size_field),
        })
}

/// `expected input at least 11x11 to fit its 11x11 kernel with padding
/// "valid", found (None, 5, 5, 1); use padding "same" or a smaller kernel_size`.
fn window_too_large(
    layer: &str,
    class: &str,
    input: &[usize],
    kernel: (usize, usize),
    padding: Padding,
    dilation: (usize, usize),
    size_field: &str,
) -> NnError {
    let span = |k: usize, d: usize| {
        k.saturating_sub(1)
            .saturating_mul(d.max(1))
            .saturating_add(1)
    };
    let (wh, ww) = (span(kernel.0, dilation.0), span(kernel.1, dilation.1));
    let what = if size_field == "pool_size" {
        format!("{}x{} pool window", kernel.0, kernel.1)
    } else if dilation != (1, 1) {
        format!(
            "{}x{} kernel, which dilation_rate {dilation:?} spreads over {wh}x{ww}",
            kernel.0, kernel.1
        )
    } else {
        format!("{}x{} kernel", kernel.0, kernel.1)
    };
    let (pads_h, pads_w, with) = match padding {
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => (
            top.saturating_add(bottom),
            left.saturating_add(right),
            if top == bottom && bottom == left && left == right {
                format!("explicit padding ({top} on every side)")
            } else {
                format!("explicit padding (top {top}, bottom {bottom}, left {left}, right {right})")
            },
        ),
        _ => (0, 0, "padding \"valid\"".to_string()),
    };
    let need = |w: usize, p: usize| w.saturating_sub(p).max(1);
    let mut hint = String::from("use padding \"same\"");
    if matches!(padding, Padding::Explicit { .. }) {
        hint.push_str(", more padding");
    }
    if dilation != (1, 1) {
        hint.push_str(&format!(
            ", a smaller {size_field} or a smaller dilation_rate"
        ));
    } else {
        hint.push_str(&format!(" or a smaller {size_field}"));
    }
    NnError::Shape {
        layer: layer.to_string(),
        class: class.to_string(),
        expected: format!(
            "at least {}x{} to fit its {what}{} with {with}",
            need(wh, pads_h),
            need(ww, pads_w),
            if dilation != (1, 1) { "," } else { "" }
        ),
        found: format!("{}; {hint}", crate::error::batch_shape(input)),
    }
}

pub(crate) fn padding_json(p: Padding) -> Value {
    match p {
        Padding::Valid => "valid".into(),
        Padding::Same => "same".into(),
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => Value::from(vec![vec![top, bottom], vec![left, right]]),
    }
}

impl Conv2D {
    pub fn new(filters: usize, kernel_size: (usize, usize)) -> Self {
        Conv2D {
            base: LayerBase::new(None),
            filters,
            kernel_size,
            strides: (1, 1),
            padding: Padding::Valid,
            dilation_rate: (1, 1),
            groups: 1,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            dtype: None,
            model_precision: Precision::Float32,
            kernel: None,
            bias: None,
        }
    }
    pub fn named(mut self, name: &str) -> Self {
        self.base.name = name.to_string();
        self
    }
    pub fn strides(mut self, s: usize) -> Self {
        self.strides = (s, s);
        self
    }
    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    pub fn use_bias(mut self, on: bool) -> Self {
        self.use_bias = on;
        self
    }
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation_rate = (d, d);
        self
    }
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    pub fn kernel_initializer(mut self, i: Initializer) -> Self {
        self.kernel_initializer = i;
        self
    }
    /// Multiplies in `precision` whatever the model's policy (Keras's
    /// `Conv2D(..., dtype="mixed_bfloat16")`).
    pub fn dtype(mut self, precision: Precision) -> Self {
        self.dtype = Some(precision);
        self
    }
    /// The kernel, once built.
    pub fn kernel(&self) -> Option<&Tensor> {
        self.kernel.as_ref().map(|w| &w.value)
    }
    fn config_core(&self) -> Conv2dConfig {
        Conv2dConfig {
            strides: self.strides,
            padding: self.padding,
            dilation: self.dilation_rate,
            groups: self.groups,
            ..Default::default()
        }
        .with_precision(self.dtype.unwrap_or(self.model_precision))
    }
    fn pre_activation(&self, x: &Tensor) -> Result<Tensor> {
        self.convolve(x, false)
    }

    /// The kernel, once `x` is checked to be NHWC with the kernel's channels.
    fn kernel_for(&self, x: &Tensor) -> Result<&Weight> {
        let name = &self.base.name;
        let k = self.kernel.as_ref().ok_or_else(|| not_built(name))?;
        let cin = k.shape()[2] * self.groups;
        if x.rank() != 4 || x.shape()[3] != cin {
            return Err(NnError::shape(
                name,
                "Conv2D",
                format!("(None, H, W, {cin})"),
                x.shape().get(1..).unwrap_or(&[]),
            ));
        }
        Ok(k)
    }

    /// The convolution plus bias, and the ReLU when `relu`.
    fn convolve(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let k = self.kernel_for(x)?;
        let bias = self.bias.as_ref().map(|b| &b.value);
        if relu {
            x.conv2d_relu(&k.value, bias, self.config_core())
        } else {
            x.conv2d(&k.value, bias, self.config_core())
        }
        .in_layer(&self.base.name)
    }

    /// The convolution plus bias with its output's per-channel moments, for
    /// a training BatchNorm after it ([`Tensor::conv2d_moments`]). The
    /// layer's own activation must be linear: the model's fusion pass only
    /// hands it such a Conv2D.
    pub(crate) fn forward_moments(
        &self,
        x: &Tensor,
    ) -> Result<(Tensor, strata_core::kernels::moments::ChannelMoments)> {
        let k = self.kernel_for(x)?;
        let bias = self.bias.as_ref().map(|b| &b.value);
        x.conv2d_moments(&k.value, bias, self.config_core())
            .in_layer(&self.base.name)
    }

    /// The convolution with an epilogue fused in (inference only; see
    /// [`Tensor::conv2d_fused`]). The layer's own activation must be linear: the
    /// model's fusion pass only hands it chains that start with such a Conv2D.
    pub(crate) fn forward_fused(&self, x: &Tensor, ep: &strata_core::Epilogue) -> Result<Tensor> {
        let k = self.kernel_for(x)?;
        let bias = self.bias.as_ref().map(|b| &b.value);
        x.conv2d_fused(&k.value, bias, self.config_core(), ep)
            .in_layer(&self.base.name)
    }
}

impl Layer for Conv2D {
    fn base(&self) -> &LayerBase {
        &self.base
    }
    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }
    fn class_name(&self) -> &'static str {
        "Conv2D"
    }
    fn build(&mut self, inputs: &[Vec<usize>], rng: &mut Rng) -> Result<Vec<usize>> {
        expect_inputs(self, inputs.len(), 1)?;
        let name = self.base.name.clone();
        let s = &inputs[0];
        if self.filters == 0 {
            return Err(NnError::config(&name, "filters", "must be at least 1"));
        }
        if (self.strides.0 > 1 || self.strides.1 > 1)
            && (self.dilation_rate.0 > 1 || self.dilation_rate.1 > 1)
        {
            return Err(NnError::config(
                &name,
                "dilation_rate",
                "dilation_rate > 1 cannot be combined with strides > 1 (as in Keras)",
            ));
        }
        let (oh, ow) = window_output(
            &name,
            "Conv2D",
            s,
            self.kernel_size,
            self.strides,
            self.padding,
            self.dilation_rate,
        )?;
        let cin = s[2];
        if self.groups == 0
            || !cin.is_multiple_of(self.groups)
            || !self.filters.is_multiple_of(self.groups)
        {
            return Err(NnError::config(
                &name,
                "groups",
                format!(
                    "{} groups must divide both the {cin} input channels and the {} filters",
                    self.groups, self.filters
                ),
            ));
        }
        let kshape = [
            self.kernel_size.0,
            self.kernel_size.1,
            cin / self.groups,
            self.filters,
        ];
        match &self.kernel {
            Some(k) if k.shape() != kshape => {
                return Err(NnError::shape(
                    &name,
                    "Conv2D",
                    format!("(None, H, W, {})", k.shape()[2] * self.groups),
                    s,
                ));
            }
            Some(_) => {}
            None => {
                self.kernel = Some(Weight::new(
                    "kernel",
                    self.kernel_initializer.init(&kshape, rng),
                    self.base.trainable,
                ));
                if self.use_bias {
                    self.bias = Some(Weight::new(
                        "bias",
                        self.bias_initializer.init(&[self.filters], rng),
                        self.base.trainable,
                    ));
                }
            }
        }
        Ok(vec![oh, ow, self.filters])
    }
    fn forward(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Result<Tensor> {
        expect_inputs(self, inputs.len(), 1)?;
        if self.activation == Activation::Relu {
            // the ReLU in the convolution's epilogue: bitwise the same, one sweep less
            return self.convolve(&inputs[0], true);
        }
        let z = self.pre_activation(&inputs[0])?;
        self.activation.apply(&z).in_layer(&self.base.name)
    }
    fn forward_logits(&mut self, inputs: &[Tensor], _ctx: &mut Ctx) -> Option<Result<Tensor>> {
        (self.activation == Activation::Softmax && inputs.len() == 1)
            .then(|| self.pre_activation(&inputs[0]))
    }
    fn set_model_precision(&mut self, precision: Precision) {
        self.model_precision = precision;
    }
    fn precision(&self) -> Option<Precision> {
        Some(self.dtype.unwrap_or(self.model_precision))
    }
    fn weights(&self) -> Vec<&Weight> {
        self.kernel.iter().chain(self.bias.iter()).collect()
    }
    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        self.kernel.iter_mut().chain(self.bias.iter_mut()).collect()
    }
    fn config(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("filters".into(), self.filters.into());
        m.insert("kernel_size".into(), pair_json(self.kernel_size));
        m.insert("strides".into(), pair_json(self.strides));
        m.insert("padding".into(), padding_json(self.padding));
        m.insert("dilation_rate".into(), pair_json(self.dilation_rate));
        m.insert("groups".into(), self.groups.into());
        m.insert("activation".into(), self.activation.name().into());
        m.insert("use_bias".into(), self.use_bias.into());
        m.insert(
            "kernel_initializer".into(),
            self.kernel_initializer.name().into(),
        );
        if let Some(p) = self.dtype {
            m.insert("dtype".into(), p.as_str().into());
        }
        m
    }
    fn describe(&self, inputs: &[Vec<usize>], output: &[usize]) -> crate::explain::Description {
        crate::explain::describe_conv2d(self, inputs, output)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{build, check_layer_gradients};
    use super::*;

    #[test]
    fn seed_question_shapes() {
        let mut a = Conv2D::new(8, (11, 11)).named("conv2d");
        assert_eq!(build(&mut a, &[&[101, 101, 1]]).unwrap(), vec![91, 91, 8]);
        assert_eq!(a.weights()[0].shape(), &[11, 11, 1, 8]);
        assert_eq!(a.param_count(), 976);
        let mut b = Conv2D::new(16, (7, 7)).named("conv2d_1");
        assert_eq!(build(&mut b, &[&[91, 91, 8]]).unwrap(), vec![85, 85, 16]);
        assert_eq!(b.weights()[0].shape(), &[7, 7, 8, 16]);
        assert_eq!(b.param_count(), 6288);
    }

    #[test]
    fn shape_errors_name_the_layer() {
        let mut c = Conv2D::new(4, (5, 5)).named("small");
        let e = build(&mut c, &[&[3, 3, 1]]).unwrap_err().to_string();
        assert_eq!(
            e,
            "layer 'small' (Conv2D): expected input at least 5x5 to fit its 5x5 kernel with padding \"valid\", found (None, 3, 3, 1); use padding \"same\" or a smaller kernel_size"
        );
        let mut g = Conv2D::new(4, (3, 3)).groups(3);
        assert!(build(&mut g, &[&[8, 8, 4]]).is_err());
        let mut sd = Conv2D::new(4, (3, 3)).strides(2).dilation(2);
        assert!(build(&mut sd, &[&[8, 8, 4]]).is_err());
        let mut ok = Conv2D::new(4, (3, 3)).named("c");
        build(&mut ok, &[&[8, 8, 2]]).unwrap();
        let e = build(&mut ok, &[&[8, 8, 3]]).unwrap_err().to_string();
        assert!(e.contains("expected input (None, H, W, 2)"), "{e}");
    }

    #[test]
    fn a_window_larger_than_its_input_is_one_sentence() {
        let e = build(&mut Conv2D::new(8, (11, 11)).named("c"), &[&[5, 5, 1]])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "layer 'c' (Conv2D): expected input at least 11x11 to fit its 11x11 kernel with padding \"valid\", found (None, 5, 5, 1); use padding \"same\" or a smaller kernel_size"
        );
        let mut dilated = Conv2D::new(8, (3, 3)).dilation(3).named("d");
        let e = build(&mut dilated, &[&[5, 5, 1]]).unwrap_err().to_string();
        assert_eq!(
            e,
            "layer 'd' (Conv2D): expected input at least 7x7 to fit its 3x3 kernel, which dilation_rate (3, 3) spreads over 7x7, with padding \"valid\", found (None, 5, 5, 1); use padding \"same\", a smaller kernel_size or a smaller dilation_rate"
        );
        let mut padded = Conv2D::new(1, (4, 2))
            .padding(Padding::Explicit {
                top: 1,
                bottom: 0,
                left: 0,
                right: 0,
            })
            .named("p");
        let e = build(&mut padded, &[&[2, 1, 1]]).unwrap_err().to_string();
        assert_eq!(
            e,
            "layer 'p' (Conv2D): expected input at least 3x2 to fit its 4x2 kernel with explicit padding (top 1, bottom 0, left 0, right 0), found (None, 2, 1, 1); use padding \"same\", more padding or a smaller kernel_size"
        );
        let mut pool = super::super::MaxPooling2D::new((7, 7), None, "valid").named("pool");
        let e = build(&mut pool, &[&[5, 5, 1]]).unwrap_err().to_string();
        assert_eq!(
            e,
            "layer 'pool' (MaxPooling2D): expected input at least 7x7 to fit its 7x7 pool window with padding \"valid\", found (None, 5, 5, 1); use padding \"same\" or a smaller pool_size"
        );
        // "same" fits any input
        let mut same = Conv2D::new(1, (11, 11)).padding(Padding::Same);
        assert_eq!(build(&mut same, &[&[5, 5, 1]]).unwrap(), vec![5, 5, 1]);
        // a zero-sized kernel is an argument error, not a size one
        let e = build(&mut Conv2D::new(1, (0, 3)).named("z"), &[&[5, 5, 1]])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "layer 'z': invalid kernel_size: must be positive, found (0, 3)"
        );
    }

    #[test]
    fn gradient_check_same_stride2() {
        let mut c = Conv2D::new(3, (3, 3))
            .strides(2)
            .padding(Padding::Same)
            .activation(Activation::Tanh);
        build(&mut c, &[&[5, 6, 2]]).unwrap();
        let x = Tensor::rand_normal(&[2, 5, 6, 2], 0.0, 1.0, &mut Rng::new(1));
        check_layer_gradients(&mut c, &[x], true);
    }
}
