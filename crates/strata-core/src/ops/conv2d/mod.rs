//! 2-d convolution over NHWC input with an HWIO kernel `(kh, kw, in/groups, filters)`,
//! Keras `Conv2D` semantics ('same' pads extra after, groups split channels in blocks).
//!
//! This file holds the op: its configuration, its shape rule ([`plan`]) and
//! its autograd wiring. How it runs is chosen in one place, `dispatch.rs`
//! (forward, dX and dW each from the plan and the CPU), and run by `run.rs`;
//! the algorithms live in `algorithms/`, one file each: im2col + GEMM (every
//! convolution can take it), the packed kernel reading the input in place,
//! Winograd F(2x2, 3x3) and F(4x4, 3x3) with their dW, and the 1x1 paths.
//! `reference.rs` is the slow, obvious convolution every algorithm is
//! tested against. `db` = column sums of `dY`.

use std::borrow::Cow;

use crate::autograd::Upstream;
use crate::error::{fmt_shape, CoreError, Result};
use crate::kernels::buffers;
use crate::ops::batch_norm::moments::{ChannelMoments, MomentSink};
use crate::ops::padding::{nhwc, Padding};
use crate::ops::relu_mask;
use crate::precision::{rounded_bf16, Precision};
use crate::tensor::Tensor;

pub(crate) mod algorithms;
pub mod dispatch;
pub(crate) mod epilogue;
pub mod geometry;
#[cfg(test)]
mod reference;
mod run;
#[cfg(test)]
mod tests;
pub(crate) mod weights;

use dispatch::WeightUse;
use epilogue::EpilogueRef;
pub use geometry::{ConvPlan, COLS_BUDGET_BYTES};

/// Options of [`Tensor::conv2d`], named after Keras' `Conv2D` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// (rows, columns) step between windows.
    pub strides: (usize, usize),
    pub padding: Padding,
    /// `dilation_rate`: spacing between kernel taps. Keras refuses it with strides > 1.
    pub dilation: (usize, usize),
    /// Channel groups: input and filters split into `groups` independent blocks.
    pub groups: usize,
    /// What the products are taken in: float32, or bfloat16 operands summed
    /// in float32 (forward and both gradients; see [`crate::precision`]).
    pub precision: Precision,
}

/// What [`Tensor::conv2d_fused`] applies to the convolution's output, per channel:
/// `relu?(y * scale + shift + residual)`; absent parts are skipped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// One factor per filter (an inference BatchNorm's `gamma / sqrt(var + eps)`).
    pub scale: Option<&'a [f32]>,
    /// One offset per filter (`beta - mean * scale`).
    pub shift: Option<&'a [f32]>,
    /// A tensor of the output's shape added afterwards (a residual connection).
    pub residual: Option<&'a Tensor>,
    pub relu: bool,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            strides: (1, 1),
            padding: Padding::Valid,
            dilation: (1, 1),
            groups: 1,
            precision: Precision::Float32,
        }
    }
}

impl Conv2dConfig {
    pub fn with_strides(mut self, sh: usize, sw: usize) -> Self {
        self.strides = (sh, sw);
        self
    }
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
    pub fn with_dilation(mut self, dh: usize, dw: usize) -> Self {
        self.dilation = (dh, dw);
        self
    }
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
}

/// The shape rule: checks the input, kernel and bias shapes against the
/// configuration and resolves the padding, once per call.
fn plan(x: &[usize], k: &[usize], bias: Option<&[usize]>, cfg: &Conv2dConfig) -> Result<ConvPlan> {
    const OP: &str = "conv2d";
    let (n, h, w, c) = nhwc(OP, x)?;
    let [kh, kw, cin_g, cout] = *k else {
        return Err(CoreError::shape(
            OP,
            "a rank-4 HWIO kernel (kh, kw, in_channels/groups, filters)",
            fmt_shape(k),
        ));
    };
    let groups = cfg.groups;
    if groups == 0 {
        return Err(CoreError::arg(OP, "groups", "must be at least 1"));
    }
    if c % groups != 0 || cin_g * groups != c {
        return Err(CoreError::shape(
            OP,
            format!(
                "kernel (kh, kw, {}, filters) for input {} with groups {groups}",
                c / groups.max(1),
                fmt_shape(x)
            ),
            format!("kernel {}", fmt_shape(k)),
        ));
    }
    if cout % groups != 0 {
        return Err(CoreError::shape(
            OP,
            format!("a number of filters divisible by groups {groups}"),
            format!("kernel {}", fmt_shape(k)),
        ));
    }
    if let Some(b) = bias {
        if b != [cout] {
            return Err(CoreError::shape(
                OP,
                format!("bias {}", fmt_shape(&[cout])),
                fmt_shape(b),
            ));
        }
    }
    let (s, d) = (cfg.strides, cfg.dilation);
    if (s.0 > 1 || s.1 > 1) && (d.0 > 1 || d.1 > 1) {
        return Err(CoreError::arg(
            OP,
            "dilation",
            format!(
                "strides {s:?} > 1 together with dilation {d:?} > 1 is not supported (Keras refuses it)"
            ),
        ));
    }
    let geo = cfg.padding.resolve(OP, (h, w), (kh, kw), s, d)?;
    let pointwise = kh == 1 && kw == 1 && s == (1, 1) && geo.unpadded();
    let mut p = ConvPlan {
        n,
        c,
        cout,
        groups,
        cin_g,
        cout_g: cout / groups,
        kg: kh * kw * cin_g,
        geo,
        pointwise,
        chunk: 1,
    };
    p.chunk = p.chunk_for_budget(COLS_BUDGET_BYTES);
    Ok(p)
}

/// The forward of `x` with `kernel` (values `w`), by the algorithm
/// [`dispatch::forward`] picks, its weights prepared or taken from the
/// kernel's cache ([`weights::packed_kernel`]). Under bfloat16 the input and
/// kernel are rounded first and the products summed in float32; a kernel
/// whose packing is cached was rounded when it was packed, so it is not
/// rounded again.
fn forward_of_kernel(
    x: &[f32],
    kernel: &Tensor,
    w: &[f32],
    bias: Option<&[f32]>,
    p: &ConvPlan,
    ep: &EpilogueRef,
    precision: Precision,
) -> Vec<f32> {
    let gemm = dispatch::forward_gemm(p, precision);
    let use_ = match crate::autograd::should_record(&[kernel]) {
        true => WeightUse::Once,
        false => WeightUse::Kept,
    };
    let alg = dispatch::forward(p, gemm, use_);
    // the portable definition: rounded operands through float32
    let portable = precision.is_bf16() && !gemm.is_bf16();
    let xr = portable.then(|| rounded_bf16(x));
    let values = || match portable {
        true => Cow::Owned(rounded_bf16(w)),
        false => Cow::Borrowed(w),
    };
    let packed = weights::packed_kernel(kernel, values, p, alg, gemm, precision);
    // an algorithm without prepared weights reads the kernel itself
    let wr = (portable && packed.is_none()).then(|| rounded_bf16(w));
    let w_read: &[f32] = match (portable, &wr) {
        (false, _) => w,
        (true, Some(wr)) => wr,
        (true, None) => &[],
    };
    let y = run::forward(
        alg,
        gemm,
        xr.as_deref().unwrap_or(x),
        w_read,
        packed.as_deref().map(|v| &v[..]),
        bias,
        p,
        ep,
    );
    xr.into_iter().chain(wr).for_each(buffers::recycle);
    y
}

/// Blocks of 1024 rows are summed in parallel, then the blocks' sums in order, so
/// the result does not depend on the thread count.
pub(crate) fn column_sums(g: &[f32], cols: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const BLOCK_ROWS: usize = 1024;
    let cols = cols.max(1);
    let block = |b: &[f32]| {
        let mut s = vec![0.0f32; cols];
        for row in b.chunks_exact(cols) {
            s.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        s
    };
    let partials: Vec<Vec<f32>> = if g.len() > BLOCK_ROWS * cols {
        crate::threads::install(|| g.par_chunks(BLOCK_ROWS * cols).map(block).collect())
    } else {
        vec![block(g)]
    };
    let mut s = vec![0.0; cols];
    for p in partials {
        s.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    s
}

impl Tensor {
    /// Keras `Conv2D`: NHWC `self` (N, H, W, C) with an HWIO `kernel`
    /// (kh, kw, C/groups, filters) and an optional `bias` (filters,) gives
    /// (N, OH, OW, filters). Errors name the op and the mismatched shapes.
    pub fn conv2d(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        config: Conv2dConfig,
    ) -> Result<Tensor> {
        self.conv2d_act(kernel, bias, config, false, None)
    }

    /// [`Tensor::conv2d`] that also returns the per-channel moments (count,
    /// mean, squared deviations) of its output, taken in the epilogue while
    /// each block of rows is in cache: a training BatchNorm after it
    /// ([`Tensor::batch_norm_train_with`]) then needs no sweep of its own for
    /// its batch statistics. The output and gradients are those of `conv2d`.
    pub fn conv2d_moments(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        config: Conv2dConfig,
    ) -> Result<(Tensor, ChannelMoments)> {
        let c = kernel.shape().last().copied().unwrap_or(0);
        let sink = MomentSink::new(c);
        let y = self.conv2d_act(kernel, bias, config, false, Some(&sink))?;
        Ok((y, sink.finish()))
    }

    /// `relu(conv2d(x, kernel) + bias)` as one op (Keras `Conv2D(activation="relu")`):
    /// the ReLU runs in the convolution's epilogue, and the backward keeps a
    /// bit mask of the positive outputs instead of the pre-activation. Output and
    /// gradients are bitwise those of `conv2d` followed by `relu`.
    pub fn conv2d_relu(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        config: Conv2dConfig,
    ) -> Result<Tensor> {
        self.conv2d_act(kernel, bias, config, true, None)
    }

    fn conv2d_act(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        config: Conv2dConfig,
        relu: bool,
        moments: Option<&MomentSink>,
    ) -> Result<Tensor> {
        let p = plan(
            self.shape(),
            kernel.shape(),
            bias.map(|b| b.shape()),
            &config,
        )?;
        let ep = EpilogueRef {
            relu,
            moments,
            ..EpilogueRef::NONE
        };
        let data = {
            let bd = bias.map(|b| b.data());
            let w = kernel.data();
            forward_of_kernel(
                &self.data(),
                kernel,
                &w,
                bd.as_deref().map(|v| &v[..]),
                &p,
                &ep,
                config.precision,
            )
        };
        let precision = config.precision;
        let mut inputs = vec![self, kernel];
        inputs.extend(bias);
        // the ReLU's gradient rule needs only where the output is positive
        let mask = (relu && crate::autograd::should_record(&inputs))
            .then(|| relu_mask::positive_mask(&data));
        let out_shape = vec![p.n, p.geo.out_h, p.geo.out_w, p.cout];
        let (x, w, has_bias) = (self.clone(), kernel.clone(), bias.is_some());
        let b_grad = bias.is_some_and(|b| b.requires_grad());
        Ok(Tensor::from_op_accumulating(
            data,
            out_shape,
            if relu { "conv2d_relu" } else { "conv2d" },
            &inputs,
            move |up, acc| {
                // through the ReLU first: its own rule, g * 1 where y > 0, else
                // g * 0, over the gradient itself when no one else holds it
                let masked = match (mask, up) {
                    (Some(m), Upstream::Owned(mut g)) => {
                        relu_mask::masked_in_place(&mut g, &m);
                        Upstream::Owned(g)
                    }
                    (Some(m), Upstream::Shared(g)) => Upstream::Owned(relu_mask::masked(&g, &m)),
                    (None, up) => up,
                };
                let g: &[f32] = masked.as_slice();
                let needs = (x.requires_grad(), w.requires_grad());
                let (xd, wd) = (x.data(), w.data());
                let (dx, dw) = run::backward(&xd, &wd, g, &p, needs, &mut acc[0], precision);
                drop((xd, wd));
                let mut grads = vec![dx, dw];
                if has_bias {
                    grads.push(b_grad.then(|| column_sums(g, p.cout)));
                }
                if let Upstream::Owned(gm) = masked {
                    buffers::recycle(gm);
                }
                grads
            },
        ))
    }

    /// Inference-only convolution with its epilogue fused in:
    /// `y = relu?((conv2d(x, kernel) + bias) * scale + shift + residual)` per output
    /// channel, computed in one sweep over each chunk of output rows while they are
    /// still in cache. This is Conv2D -> BatchNorm (inference) -> [Add] -> [ReLU]
    /// with the BatchNorm as its affine map ([`crate::ops::batch_norm::affine_of`]);
    /// the result is bitwise that of the separate ops. It records no gradient, so
    /// it refuses inputs that would need one (use the separate ops to train).
    pub fn conv2d_fused(
        &self,
        kernel: &Tensor,
        bias: Option<&Tensor>,
        config: Conv2dConfig,
        ep: &Epilogue,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d_fused";
        let mut recorded = vec![self, kernel];
        recorded.extend(bias);
        recorded.extend(ep.residual);
        if crate::autograd::should_record(&recorded) {
            return Err(CoreError::arg(
                OP,
                "inputs",
                "an input requires grad: the fused op records no gradient; \
                 call it under no_grad or use conv2d and the separate ops",
            ));
        }
        let p = plan(
            self.shape(),
            kernel.shape(),
            bias.map(|b| b.shape()),
            &config,
        )?;
        let out_shape = vec![p.n, p.geo.out_h, p.geo.out_w, p.cout];
        for (name, v) in [("scale", ep.scale), ("shift", ep.shift)] {
            if let Some(v) = v {
                if v.len() != p.cout {
                    return Err(CoreError::shape(
                        OP,
                        format!("{name} ({},) for {} filters", p.cout, p.cout),
                        fmt_shape(&[v.len()]),
                    ));
                }
            }
        }
        if let Some(r) = ep.residual {
            if r.shape() != out_shape {
                return Err(CoreError::shape(
                    OP,
                    format!("residual {} (the output's shape)", fmt_shape(&out_shape)),
                    fmt_shape(r.shape()),
                ));
            }
        }
        let data = {
            let bd = bias.map(|b| b.data());
            let rd = ep.residual.map(|r| r.data());
            let epr = EpilogueRef {
                bias: None,
                scale: ep.scale,
                shift: ep.shift,
                residual: rd.as_deref().map(|v| &v[..]),
                relu: ep.relu,
                moments: None,
            };
            let (x, w) = (self.data(), kernel.data());
            forward_of_kernel(
                &x,
                kernel,
                &w,
                bd.as_deref().map(|v| &v[..]),
                &p,
                &epr,
                config.precision,
            )
        };
        Tensor::from_vec(data, &out_shape)
    }
}
