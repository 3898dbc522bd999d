//! Numbers, counts and shapes in words: `1,234`, `2 filters`, `(None, 28, 28, 1)`.

use super::*;

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
pub(super) fn thousands_u64(n: u64) -> String {
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

pub(super) fn ins(inputs: &[Vec<usize>]) -> String {
    inputs
        .iter()
        .map(|s| batch_shape(s))
        .collect::<Vec<_>>()
        .join(", ")
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
pub(super) fn each_of(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("the 1 {one}")
    } else {
        format!("each of the {n} {many}")
    }
}

/// `the 1 input channel` / `all 8 input channels`.
pub(super) fn all_of(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("the 1 {one}")
    } else {
        format!("all {n} {many}")
    }
}

/// A float argument as a person writes it: `0.5`, `0.001`, `2`, `1.25`.
pub(super) fn num(x: f32) -> String {
    let r = (f64::from(x) * 1e6).round() / 1e6;
    if r == 0.0 && x != 0.0 {
        format!("{x}")
    } else {
        format!("{r}")
    }
}

/// `(-1, 4)`, `(512,)`: a target shape as Keras prints it.
pub(super) fn signed_tuple(shape: &[isize]) -> String {
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
pub(super) fn pads_words(top: usize, bottom: usize, left: usize, right: usize) -> String {
    if top == bottom && bottom == left && left == right {
        format!("{top} on every side")
    } else {
        format!("top {top}, bottom {bottom}, left {left}, right {right}")
    }
}
