//! The colour ramps: diverging (signed attributions) and sequential (Grad-CAM).

/// Diverging control points, -1..1: ColorBrewer's RdBu, exactly white at 0.
pub(super) const DIVERGING: [(f32, [u8; 3]); 7] = [
    (-1.0, [5, 48, 97]),
    (-2.0 / 3.0, [33, 102, 172]),
    (-1.0 / 3.0, [146, 197, 222]),
    (0.0, [255, 255, 255]),
    (1.0 / 3.0, [244, 165, 130]),
    (2.0 / 3.0, [178, 24, 43]),
    (1.0, [103, 0, 31]),
];

/// Sequential control points, 0..1: the classic "jet" (dark blue, blue,
/// cyan, yellow, red, dark red), the usual colours of a Grad-CAM heat map.
pub(super) const SEQUENTIAL: [(f32, [u8; 3]); 6] = [
    (0.0, [0, 0, 128]),
    (0.125, [0, 0, 255]),
    (0.375, [0, 255, 255]),
    (0.625, [255, 255, 0]),
    (0.875, [255, 0, 0]),
    (1.0, [128, 0, 0]),
];

/// Linear interpolation between control points sorted by position; `t` is
/// clamped to their range, NaN reads as 0.
pub(super) fn ramp(points: &[(f32, [u8; 3])], t: f32) -> [u8; 3] {
    let (first, last) = (points[0], points[points.len() - 1]);
    let t = if t.is_nan() { 0.0 } else { t }.clamp(first.0, last.0);
    let i = points
        .windows(2)
        .position(|p| t <= p[1].0)
        .unwrap_or(points.len() - 2);
    let ((a, ca), (b, cb)) = (points[i], points[i + 1]);
    let f = if b > a { (t - a) / (b - a) } else { 0.0 };
    std::array::from_fn(|k| (ca[k] as f32 + f * (cb[k] as f32 - ca[k] as f32)).round() as u8)
}

/// The diverging colour of `t` in -1..1: blue (-1), white (0), red (+1).
/// Values outside are clamped, NaN is white.
pub fn diverging(t: f32) -> [u8; 3] {
    ramp(&DIVERGING, t)
}

/// The sequential colour of `t` in 0..1: jet, dark blue (0) through cyan,
/// yellow and red to dark red (1). Values outside are clamped, NaN is 0.
pub fn sequential(t: f32) -> [u8; 3] {
    ramp(&SEQUENTIAL, t)
}
