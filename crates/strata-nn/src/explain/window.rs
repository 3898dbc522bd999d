//! A convolution's or pooling's sliding window (kernel, strides, padding,
//! dilation) in words.

use super::*;

/// The size a `k` kernel dilated by `d` covers: `(k - 1) * d + 1`.
pub(super) fn span(k: usize, d: usize) -> usize {
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
    pub(super) fn geometry(&self, input: &[usize]) -> Option<Geometry2d> {
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
    pub(super) fn padding_words(&self, input: &[usize]) -> String {
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
    pub(super) fn stride_words(&self, input: &[usize], what: &str) -> String {
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
    pub(super) fn output_size_note(&self, input: &[usize]) -> Option<String> {
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
