//! Spatial padding for convolutions and pooling, resolved once into explicit
//! per-side amounts so the kernels only ever see numbers.
//!
//! Keras "same": `out = ceil(in / stride)`, `total = max((out-1)*stride + (k-1)*dilation + 1 - in, 0)`,
//! `before = total / 2`, the odd one goes after (bottom/right). "valid" pads nothing.
//! `Explicit` covers PyTorch-style numeric padding (torchvision's ResNet stem).

use crate::error::{fmt_shape, CoreError, Result};

/// How a 2-d window op pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding; windows must fit inside the input.
    #[default]
    Valid,
    /// Keras "same": `out = ceil(in / stride)`, extra padding after.
    Same,
    /// Fixed amounts per side (rows above/below, columns left/right).
    Explicit {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    },
}

impl Padding {
    /// The same amount `p` on every side (PyTorch's `padding=p`).
    pub fn symmetric(p: usize) -> Padding {
        Padding::Explicit {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// Resolves the padding of an `(h, w)` input for a `kernel` window with the
    /// given strides and dilation, naming `op` in any error.
    pub fn resolve(
        &self,
        op: &str,
        input: (usize, usize),
        kernel: (usize, usize),
        strides: (usize, usize),
        dilation: (usize, usize),
    ) -> Result<Geometry2d> {
        for (field, (a, b)) in [
            ("kernel size", kernel),
            ("strides", strides),
            ("dilation", dilation),
        ] {
            if a == 0 || b == 0 {
                return Err(CoreError::arg(
                    op,
                    field,
                    format!("must be positive, found ({a}, {b})"),
                ));
            }
        }
        let span = |k: usize, d: usize| (k - 1).checked_mul(d).and_then(|v| v.checked_add(1));
        let (Some(eff_h), Some(eff_w)) = (span(kernel.0, dilation.0), span(kernel.1, dilation.1))
        else {
            return Err(CoreError::arg(
                op,
                "dilation",
                format!("dilated kernel {kernel:?} x {dilation:?} overflows"),
            ));
        };
        let (pads_h, pads_w) = match *self {
            Padding::Valid => ((0, 0), (0, 0)),
            Padding::Same => (
                same_pads(input.0, kernel.0, strides.0, dilation.0),
                same_pads(input.1, kernel.1, strides.1, dilation.1),
            ),
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => ((top, bottom), (left, right)),
        };
        let eff = (eff_h, eff_w);
        let padded = (input.0 + pads_h.0 + pads_h.1, input.1 + pads_w.0 + pads_w.1);
        let out = match *self {
            Padding::Same => (input.0.div_ceil(strides.0), input.1.div_ceil(strides.1)),
            _ => {
                if padded.0 < eff.0 || padded.1 < eff.1 {
                    return Err(CoreError::shape(
                        op,
                        format!(
                            "a padded input of at least {} (the dilated kernel {})",
                            fmt_shape(&[eff.0, eff.1]),
                            fmt_shape(&[kernel.0, kernel.1])
                        ),
                        format!(
                            "input {} padded to {}",
                            fmt_shape(&[input.0, input.1]),
                            fmt_shape(&[padded.0, padded.1])
                        ),
                    ));
                }
                (
                    (padded.0 - eff.0) / strides.0 + 1,
                    (padded.1 - eff.1) / strides.1 + 1,
                )
            }
        };
        Ok(Geometry2d {
            in_h: input.0,
            in_w: input.1,
            kh: kernel.0,
            kw: kernel.1,
            sh: strides.0,
            sw: strides.1,
            dh: dilation.0,
            dw: dilation.1,
            pad_top: pads_h.0,
            pad_bottom: pads_h.1,
            pad_left: pads_w.0,
            pad_right: pads_w.1,
            out_h: out.0,
            out_w: out.1,
        })
    }
}

fn same_pads(input: usize, k: usize, stride: usize, dilation: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let need = ((out.max(1) - 1) * stride)
        .saturating_add((k - 1).saturating_mul(dilation))
        .saturating_add(1);
    let total = need.saturating_sub(input);
    (total / 2, total - total / 2)
}

/// A fully resolved window geometry: input, kernel, strides, dilation, pads, output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry2d {
    pub in_h: usize,
    pub in_w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub pad_right: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Geometry2d {
    /// Input row read by output row `oh` at kernel row `ki`, if it is not padding.
    #[inline]
    pub fn in_row(&self, oh: usize, ki: usize) -> Option<usize> {
        (oh * self.sh + ki * self.dh)
            .checked_sub(self.pad_top)
            .filter(|&r| r < self.in_h)
    }
    /// Input column read by output column `ow` at kernel column `kj`, if it is not padding.
    #[inline]
    pub fn in_col(&self, ow: usize, kj: usize) -> Option<usize> {
        (ow * self.sw + kj * self.dw)
            .checked_sub(self.pad_left)
            .filter(|&c| c < self.in_w)
    }
    /// Output row that reads input row `ih` through kernel row `ki`, if any.
    #[inline]
    pub fn out_row(&self, ih: usize, ki: usize) -> Option<usize> {
        let p = (ih + self.pad_top).checked_sub(ki * self.dh)?;
        (p % self.sh == 0 && p / self.sh < self.out_h).then_some(p / self.sh)
    }
    /// Output column that reads input column `iw` through kernel column `kj`, if any.
    #[inline]
    pub fn out_col(&self, iw: usize, kj: usize) -> Option<usize> {
        let p = (iw + self.pad_left).checked_sub(kj * self.dw)?;
        (p % self.sw == 0 && p / self.sw < self.out_w).then_some(p / self.sw)
    }
    /// Whether no padding is applied on any side.
    pub fn unpadded(&self) -> bool {
        self.pad_top == 0 && self.pad_bottom == 0 && self.pad_left == 0 && self.pad_right == 0
    }
}

/// Checks that `x` is a rank-4 NHWC tensor and returns its dimensions.
pub(crate) fn nhwc(op: &str, shape: &[usize]) -> Result<(usize, usize, usize, usize)> {
    match *shape {
        [n, h, w, c] => Ok((n, h, w, c)),
        _ => Err(CoreError::shape(
            op,
            "a rank-4 NHWC input (batch, height, width, channels)",
            fmt_shape(shape),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(p: Padding, i: usize, k: usize, s: usize, d: usize) -> Geometry2d {
        p.resolve("t", (i, i), (k, k), (s, s), (d, d)).unwrap()
    }

    #[test]
    fn same_matches_keras_rule() {
        // stride 2, 3x3 on an even size pads (0, 1); a 4x4 kernel at stride 1 pads (1, 2)
        let g = geo(Padding::Same, 8, 3, 2, 1);
        assert_eq!((g.pad_top, g.pad_bottom, g.out_h), (0, 1, 4));
        let g = geo(Padding::Same, 9, 3, 2, 1);
        assert_eq!((g.pad_top, g.pad_bottom, g.out_h), (1, 1, 5));
        let g = geo(Padding::Same, 6, 4, 1, 1);
        assert_eq!((g.pad_top, g.pad_bottom, g.out_h), (1, 2, 6));
        let g = geo(Padding::Same, 7, 3, 1, 2);
        assert_eq!((g.pad_top, g.pad_bottom, g.out_h), (2, 2, 7));
        let g = geo(Padding::Same, 5, 1, 3, 1);
        assert_eq!((g.pad_top, g.pad_bottom, g.out_h), (0, 0, 2));
    }

    #[test]
    fn valid_and_explicit_sizes() {
        assert_eq!(geo(Padding::Valid, 9, 3, 2, 1).out_h, 4);
        assert_eq!(geo(Padding::Valid, 9, 3, 1, 2).out_h, 5);
        // torchvision stem: 224, 7x7/2 pad 3 -> 112; maxpool 3x3/2 pad 1 -> 56
        assert_eq!(geo(Padding::symmetric(3), 224, 7, 2, 1).out_h, 112);
        assert_eq!(geo(Padding::symmetric(1), 112, 3, 2, 1).out_h, 56);
        let e = Padding::Valid
            .resolve("conv2d", (2, 5), (3, 3), (1, 1), (1, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("conv2d") && e.contains("(2, 5)"), "{e}");
        assert!(Padding::Valid
            .resolve("t", (4, 4), (0, 1), (1, 1), (1, 1))
            .is_err());
        assert!(Padding::Same
            .resolve("t", (4, 4), (3, 3), (1, 1), (usize::MAX, 1))
            .is_err());
    }

    #[test]
    fn index_maps_are_inverse() {
        for p in [Padding::Same, Padding::Valid, Padding::symmetric(1)] {
            let g = p.resolve("t", (7, 6), (3, 2), (2, 1), (1, 1)).unwrap();
            for oh in 0..g.out_h {
                for ki in 0..g.kh {
                    if let Some(ih) = g.in_row(oh, ki) {
                        assert_eq!(g.out_row(ih, ki), Some(oh));
                    }
                }
            }
        }
    }
}
