//! The pass an inference convolution applies to its freshly computed output rows,
//! `y = max?((y + bias) * scale + shift + residual, 0)` per channel: an inference-mode
//! BatchNorm, a residual Add and a ReLU folded into one in-place sweep instead of
//! three passes that each read and write a whole activation.
//!
//! Each element goes through the same f32 operations in the same order as the
//! unfused ops (`x * a + b`, then `+ r`, then `max(0)`), so fused and unfused
//! results are bitwise identical.

use crate::kernels::parallel;
use crate::ops::batch_norm::moments::MomentSink;
use crate::threads;

/// What to apply, per channel (`scale`/`shift` have one entry per output channel).
#[derive(Debug, Clone, Copy)]
pub struct EpilogueRef<'a> {
    /// Added first (a convolution's own bias), one entry per channel.
    pub bias: Option<&'a [f32]>,
    pub scale: Option<&'a [f32]>,
    pub shift: Option<&'a [f32]>,
    /// Added after the affine map; same layout and length as the output.
    pub residual: Option<&'a [f32]>,
    pub relu: bool,
    /// Takes the per-channel moments of the final rows (a training
    /// BatchNorm's batch statistics, while the rows are in cache).
    pub moments: Option<&'a MomentSink>,
}

impl EpilogueRef<'_> {
    /// Nothing to apply.
    pub const NONE: EpilogueRef<'static> = EpilogueRef {
        bias: None,
        scale: None,
        shift: None,
        residual: None,
        relu: false,
        moments: None,
    };

    /// Whether applying it changes anything.
    pub fn is_identity(&self) -> bool {
        self.bias.is_none()
            && self.scale.is_none()
            && self.shift.is_none()
            && self.residual.is_none()
            && !self.relu
            && self.moments.is_none()
    }
}

/// Applies `ep` to `out`, a whole number of rows of `channels` values; `residual`
/// (if any) is read at the same offsets as `out` starting at `offset`. Rows are
/// split over threads.
pub fn apply(out: &mut [f32], channels: usize, offset: usize, ep: &EpilogueRef) {
    if ep.is_identity() || out.is_empty() || channels == 0 {
        return;
    }
    let rows = threads::chunk_len(out.len() / channels, 64);
    parallel::for_each_chunk_mut(out, rows * channels, |i, chunk| {
        apply_serial(chunk, channels, offset + i * rows * channels, ep)
    });
}

/// [`apply`] on the calling thread (for a caller that already runs in parallel).
pub fn apply_serial(out: &mut [f32], channels: usize, offset: usize, ep: &EpilogueRef) {
    if ep.is_identity() || out.is_empty() || channels == 0 {
        return;
    }
    apply_steps(out, channels, offset, ep);
    if let Some(sink) = ep.moments {
        sink.add(offset, out);
    }
}

/// The steps of `ep` but its moments, on the calling thread.
fn apply_steps(out: &mut [f32], channels: usize, offset: usize, ep: &EpilogueRef) {
    let no_steps = EpilogueRef {
        moments: None,
        ..*ep
    };
    if no_steps.is_identity() {
        return;
    }
    let res = ep.residual.map(|r| &r[offset..offset + out.len()]);
    // an absent scale is 1 and an absent shift 0, in the same `x * a + b`
    let (ones, zeros);
    let affine = match (ep.scale, ep.shift) {
        (None, None) => None,
        (scale, shift) => {
            ones = vec![1.0; channels];
            zeros = vec![0.0; channels];
            Some((scale.unwrap_or(&ones), shift.unwrap_or(&zeros)))
        }
    };
    let steps = Steps {
        bias: ep.bias,
        affine,
        channels,
    };
    // one pass per row, specialised to the steps present (a branch per
    // element would keep the loop from being vectorised)
    macro_rules! dispatch {
        ($($b:literal $a:literal $r:literal $relu:literal)*) => {
            match (ep.bias.is_some(), affine.is_some(), res.is_some(), ep.relu) {
                $(($b, $a, $r, $relu) => steps.run::<$b, $a, $r, $relu>(out, res),)*
            }
        };
    }
    dispatch!(
        false false false false  false false false true  false false true false  false false true true
        false true false false  false true false true  false true true false  false true true true
        true false false false  true false false true  true false true false  true false true true
        true true false false  true true false true  true true true false  true true true true
    );
}

/// The per-channel operands of one epilogue, checked against the row length.
struct Steps<'a> {
    bias: Option<&'a [f32]>,
    affine: Option<(&'a [f32], &'a [f32])>,
    channels: usize,
}

impl Steps<'_> {
    /// Every row of `out` in one pass: `+ bias` if `B`, `* scale + shift` if
    /// `A`, `+ residual` if `R`, `max(0)` if `RELU`, in that order.
    fn run<const B: bool, const A: bool, const R: bool, const RELU: bool>(
        &self,
        out: &mut [f32],
        res: Option<&[f32]>,
    ) {
        let c = self.channels;
        let empty: &[f32] = &[];
        let bias = &self.bias.unwrap_or(empty)[..if B { c } else { 0 }];
        let (scale, shift) = self.affine.unwrap_or((empty, empty));
        let (scale, shift) = (
            &scale[..if A { c } else { 0 }],
            &shift[..if A { c } else { 0 }],
        );
        let res = res.unwrap_or(empty);
        for (ri, row) in out.chunks_exact_mut(c).enumerate() {
            let r = if R { &res[ri * c..(ri + 1) * c] } else { empty };
            for j in 0..c {
                let mut v = row[j];
                if B {
                    v += bias[j];
                }
                if A {
                    v = v * scale[j] + shift[j];
                }
                if R {
                    v += r[j];
                }
                if RELU {
                    v = v.max(0.0);
                }
                row[j] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_unfused_sequence_bitwise() {
        let c = 5;
        let x: Vec<f32> = (0..c * 2000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let r: Vec<f32> = (0..x.len())
            .map(|i| ((i * 11 % 17) as f32 - 8.0) * 0.1)
            .collect();
        let a: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.3).collect();
        let b: Vec<f32> = (0..c).map(|i| i as f32 * 0.1 - 0.2).collect();
        let want: Vec<f32> = x
            .iter()
            .zip(&r)
            .enumerate()
            .map(|(i, (&v, &r))| (v * a[i % c] + b[i % c] + r).max(0.0))
            .collect();
        let mut got = x.clone();
        let ep = EpilogueRef {
            bias: None,
            scale: Some(&a),
            shift: Some(&b),
            residual: Some(&r),
            relu: true,
            moments: None,
        };
        apply(&mut got, c, 0, &ep);
        assert_eq!(got, want);
        // a second half, read from the residual at an offset
        let mut tail = x[c * 1000..].to_vec();
        apply(&mut tail, c, c * 1000, &ep);
        assert_eq!(tail, want[c * 1000..]);
        // relu only
        let mut got = x.clone();
        let relu_only = EpilogueRef {
            bias: None,
            scale: None,
            shift: None,
            residual: None,
            relu: true,
            moments: None,
        };
        apply(&mut got, c, 0, &relu_only);
        assert_eq!(got, x.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
    }
}
