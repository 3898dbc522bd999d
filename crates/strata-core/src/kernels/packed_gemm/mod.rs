//! `C = A · B` with B packed once, for a convolution's weights.
//!
//! A convolution multiplies every tile of its input by the same weight matrix
//! (K = kh*kw*C_in rows, N = C_out columns). The `gemm` crate packs that matrix
//! again for every call, which at batch 1 costs as much as a seventh of the
//! arithmetic. Here the weights are packed once ([`PackedB`], cached on the
//! weight tensor between calls while they do not change) into panels of
//! [`NR`] = 64 columns, K-major, so the micro-kernel reads each panel as one
//! stream, prefetched a few rows ahead. A B used once (an activation block
//! in a dW) is read where it lies instead, if its width is a whole number of
//! panels ([`Panels::in_place`]): its column blocks are panels whose rows
//! lie a row stride apart. A is read in place through a
//! [`RowSource`] (rows of a matrix, or a convolution's
//! input as runs of kernel rows): each micro-kernel call keeps an `MR x kc`
//! block of A in L1 and broadcasts its elements against the four 16-lane
//! vectors of a panel row, with `6 x 64` sums in registers.
//!
//! The micro-kernel is AVX-512, or on CPUs without it AVX2 + FMA taking a
//! panel a quarter at a time, with bitwise the same sums ([`available`] says
//! whether this CPU has either); callers fall back to [`super::gemm`] where
//! it has neither. Sums run over k in a
//! fixed order set only by K, so results do not depend on the thread count.
//!
//! Under bfloat16 ([`PackedB::pack_bf16`], on CPUs with AVX512-BF16, see
//! [`bf16_available`]) the panels hold pairs of rows as bfloat16 pairs and
//! the micro-kernel is `simd::gemm_bf16_micro`'s: A is still read in place
//! as float32 rows, an `MR x kc` block at a time staged into bfloat16 pairs
//! (rounded to nearest even) while it stays in L1. Sums are float32.

use std::ops::Range;

use super::gemm::MatRef;

use super::simd::gemm_bf16_micro;
pub use super::simd::gemm_micro::NR;
use super::simd::gemm_micro::{self, MR, NV};
/// Longest stretch of k per micro-kernel call: an `MR x KC_MAX` block of A
/// (9 KiB) stays in the 32 KiB L1 while every panel streams past it.
const KC_MAX: usize = 384;
/// [`KC_MAX`] for bfloat16 pairs: the same bytes of staged A and of a panel.
const KC_MAX_BF16: usize = 2 * KC_MAX;
/// The L2 size assumed where the CPU's cannot be read.
const L2_BYTES: usize = 1 << 20;

/// Bytes of packed B that one pass over A's rows reuses, kept in L2 beside
/// the rows of A and C streaming through: 3/8 of the L2 of the first CPU
/// (384 KiB of a 1 MiB L2; more left A, C and associativity too little room
/// on a 512 KiB one). It orders the panels only, never a sum, so results do
/// not depend on it.
fn nc_bytes() -> usize {
    static NC: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *NC.get_or_init(|| 3 * l2_bytes().unwrap_or(L2_BYTES) / 8)
}

/// The L2 size of the first CPU as Linux reports it (`512K`), if it does.
fn l2_bytes() -> Option<usize> {
    let dir = "/sys/devices/system/cpu/cpu0/cache/index2";
    let level = std::fs::read_to_string(format!("{dir}/level")).ok()?;
    let size = std::fs::read_to_string(format!("{dir}/size")).ok()?;
    (level.trim() == "2").then_some(())?;
    parse_cache_size(&size)
}

/// `512K`, `1024K`, `2M` or a plain byte count, in bytes; `None` for
/// anything else or a size outside 64 KiB..=64 MiB.
fn parse_cache_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: usize = digits.parse().ok()?;
    let bytes = match unit {
        "" => n,
        "K" => n.checked_mul(1 << 10)?,
        "M" => n.checked_mul(1 << 20)?,
        _ => return None,
    };
    ((64 << 10)..=(64 << 20)).contains(&bytes).then_some(bytes)
}

/// B (`k x n`) packed as `ceil(n / NR)` panels, each `k` rows of `NR` columns,
/// zero-padded past column `n`; or, when `bf16`, each `ceil(k / 2)` pair rows
/// of `NR` bfloat16 pairs (rows `2p` and `2p + 1`; the bits of a pair in
/// one `f32` slot, never used as a number).
#[derive(Debug, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    data: Vec<f32>,
    bf16: bool,
}

impl PackedB {
    /// Packs any view of B (the panels are built in parallel for large ones).
    pub fn pack(b: MatRef) -> PackedB {
        Self::pack_with(&[b], true)
    }

    /// [`PackedB::pack`] on the calling thread (for a caller already in parallel).
    pub fn pack_serial(b: MatRef) -> PackedB {
        Self::pack_with(&[b], false)
    }

    /// B stacked from `views` (all as wide, their rows one after another),
    /// packed without building the stacked matrix first: a stride-1
    /// convolution's dX multiplies by its kernel rotated, which is its taps'
    /// transposes stacked in reverse order.
    /// Panics if the views differ in width.
    pub fn pack_stacked(views: &[MatRef]) -> PackedB {
        Self::pack_with(views, true)
    }

    /// [`PackedB::pack`] in bfloat16 pairs, rounded to nearest even
    /// (subnormals to zero), for the bfloat16 kernel. Panics on a CPU
    /// without AVX512-BF16 ([`bf16_available`]).
    pub fn pack_bf16(b: MatRef) -> PackedB {
        Self::pack_bf16_with(b, true)
    }

    /// [`PackedB::pack_bf16`] on the calling thread.
    pub fn pack_bf16_serial(b: MatRef) -> PackedB {
        Self::pack_bf16_with(b, false)
    }

    /// A row-major B paired straight from its rows; any other view through
    /// float32 panels first.
    fn pack_bf16_with(b: MatRef, parallel: bool) -> PackedB {
        if b.col_stride != 1 || b.rows == 0 || b.cols == 0 {
            return Self::pack_with(&[b], parallel).into_bf16(parallel);
        }
        let (k, n) = (b.rows, b.cols);
        let kp = k.div_ceil(2);
        let mut data = super::buffers::dirty(n.div_ceil(NR) * kp * NR);
        let pair = |j: usize, dst: &mut [f32]| gemm_bf16_micro::pair_panel_of(&b, j, dst);
        each_panel(&mut data, kp * NR, parallel && k * n >= PARALLEL_PACK, pair);
        PackedB {
            k,
            n,
            data,
            bf16: true,
        }
    }

    /// [`PackedB::pack_stacked`] in bfloat16 pairs (see [`PackedB::pack_bf16`]).
    pub fn pack_stacked_bf16(views: &[MatRef]) -> PackedB {
        Self::pack_with(views, true).into_bf16(true)
    }

    /// Whether the panels hold bfloat16 pairs.
    pub fn is_bf16(&self) -> bool {
        self.bf16
    }

    /// Float32 panels turned into bfloat16 pair panels.
    fn into_bf16(self, parallel: bool) -> PackedB {
        use rayon::prelude::*;
        let (k, n) = (self.k, self.n);
        let kp = k.div_ceil(2);
        let mut data = super::buffers::dirty(n.div_ceil(NR) * kp * NR);
        if !data.is_empty() {
            let pair = |(src, dst): (&[f32], &mut [f32])| gemm_bf16_micro::pair_panel(src, dst);
            let panels = self.data.chunks(k * NR).zip(data.chunks_mut(kp * NR));
            if parallel && k * n >= PARALLEL_PACK {
                let panels: Vec<_> = panels.collect();
                crate::threads::install(|| panels.into_par_iter().for_each(pair));
            } else {
                panels.for_each(pair);
            }
        }
        PackedB {
            k,
            n,
            data,
            bf16: true,
        }
    }

    fn pack_with(views: &[MatRef], parallel: bool) -> PackedB {
        let n = views.first().map_or(0, |b| b.cols);
        assert!(
            views.iter().all(|b| b.cols == n),
            "pack: views differ in width"
        );
        let k: usize = views.iter().map(|b| b.rows).sum();
        let panels = n.div_ceil(NR);
        let mut data = super::buffers::dirty(panels * k * NR);
        if data.is_empty() {
            return PackedB {
                k,
                n,
                data,
                bf16: false,
            };
        }
        let fill = |j: usize, panel: &mut [f32]| {
            let mut rest = panel;
            for b in views {
                let (panel, tail) = rest.split_at_mut(b.rows * NR);
                rest = tail;
                fill_panel(b, j, panel);
            }
        };
        each_panel(&mut data, k * NR, parallel && k * n >= PARALLEL_PACK, fill);
        PackedB {
            k,
            n,
            data,
            bf16: false,
        }
    }
    /// B (`k x n`) written straight into its panels, on the calling thread:
    /// `fill(r, n0, dst)` writes columns `n0..n0 + dst.len()` of row `r`
    /// (the columns past `n` are zeros). For a matrix computed from another
    /// (Winograd's transformed weights), without a plain copy to pack.
    pub fn build(k: usize, n: usize, mut fill: impl FnMut(usize, usize, &mut [f32])) -> PackedB {
        let len = n.div_ceil(NR) * k * NR;
        let [b] = Self::build_n_in([super::buffers::dirty(len)], k, n, |r, n0, [dst]| {
            fill(r, n0, dst)
        });
        b
    }

    /// `N` matrices of `k x n` built together, as [`PackedB::build`], into the
    /// given buffers (resized as needed): `fill` writes the same row and
    /// columns of each, for matrices computed from the same values (the 16
    /// of a Winograd transform). The caller keeps the buffers from call to
    /// call ([`PackedB::into_data`] gives them back): buffers too small for
    /// the pool would otherwise go back to the allocator, and come back as
    /// fresh pages, at every call.
    pub fn build_n_in<const N: usize>(
        mut data: [Vec<f32>; N],
        k: usize,
        n: usize,
        mut fill: impl FnMut(usize, usize, [&mut [f32]; N]),
    ) -> [PackedB; N] {
        let panels = n.div_ceil(NR);
        data.iter_mut().for_each(|d| d.resize(panels * k * NR, 0.0));
        for (j, panel) in panels_of(&mut data, k).into_iter().enumerate() {
            fill_rows(panel, (j, k, n), &mut fill);
        }
        data.map(|data| PackedB {
            k,
            n,
            data,
            bf16: false,
        })
    }

    /// [`PackedB::build_n_in`] into fresh buffers, the panels filled in parallel.
    pub fn build_n_par<const N: usize>(
        k: usize,
        n: usize,
        fill: impl Fn(usize, usize, [&mut [f32]; N]) + Sync,
    ) -> [PackedB; N] {
        use rayon::prelude::*;
        let len = n.div_ceil(NR) * k * NR;
        let mut data: [Vec<f32>; N] = std::array::from_fn(|_| super::buffers::dirty(len));
        let panels = panels_of(&mut data, k);
        let work = |(j, panel)| fill_rows(panel, (j, k, n), &mut |r, n0, dst| fill(r, n0, dst));
        crate::threads::install(|| panels.into_par_iter().enumerate().for_each(work));
        data.map(|data| PackedB {
            k,
            n,
            data,
            bf16: false,
        })
    }

    /// The packed values' buffer, for reuse by [`PackedB::build_n_in`].
    pub fn into_data(mut self) -> Vec<f32> {
        std::mem::take(&mut self.data)
    }
    pub fn rows(&self) -> usize {
        self.k
    }
    pub fn cols(&self) -> usize {
        self.n
    }
}

impl Drop for PackedB {
    fn drop(&mut self) {
        super::buffers::recycle(std::mem::take(&mut self.data));
    }
}

/// B as the micro-kernel reads it: `ceil(n / NR)` panels of `k` rows of
/// [`NR`] values, panel `j` at `ptr + j * panel_step`, its row `p` at
/// `+ p * row_step`. A [`PackedB`] is one (rows [`NR`] apart); so is a
/// row-major matrix whose width is a multiple of [`NR`], read in place
/// ([`Panels::in_place`]): its panels are column blocks, rows a row stride
/// apart, and the copy that packing it would make is saved.
#[derive(Clone, Copy)]
pub struct Panels<'a> {
    ptr: *const f32,
    k: usize,
    n: usize,
    row_step: usize,
    panel_step: usize,
    /// Pair rows of bfloat16 pairs ([`PackedB::is_bf16`]), steps in pairs.
    bf16: bool,
    _values: std::marker::PhantomData<&'a [f32]>,
}

impl<'a> Panels<'a> {
    /// `b`'s panels read where they lie, if its rows are contiguous, inside
    /// its slice, and `NR`-wide panels tile it exactly (no column past the
    /// last to pad).
    pub fn in_place(b: MatRef<'a>) -> Option<Self> {
        let fits = b.rows == 0
            || (b.rows - 1)
                .checked_mul(b.row_stride)
                .and_then(|v| v.checked_add(b.cols))
                .is_some_and(|end| end <= b.data.len());
        (b.col_stride == 1 && b.cols.is_multiple_of(NR) && b.row_stride >= b.cols && fits)
            .then_some(Panels {
                ptr: b.data.as_ptr(),
                k: b.rows,
                n: b.cols,
                row_step: b.row_stride,
                panel_step: NR,
                bf16: false,
                _values: std::marker::PhantomData,
            })
    }
    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }
}

impl<'a> From<&'a PackedB> for Panels<'a> {
    fn from(b: &'a PackedB) -> Self {
        Panels {
            ptr: b.data.as_ptr(),
            k: b.k,
            n: b.n,
            row_step: NR,
            panel_step: b.data.len() / b.n.div_ceil(NR).max(1),
            bf16: b.bf16,
            _values: std::marker::PhantomData,
        }
    }
}

/// Row stride (values) from which [`OnceB`] packs a B that could be read in
/// place: rows 4 KiB apart or more fall on few cache sets and evict each
/// other; at 2 KiB apart reading in place still does better.
const PACK_FROM_STRIDE: usize = 1024;

/// A B used once (a block of activations in a dW): read in place where
/// [`Panels::in_place`] allows and its rows are less than
/// [`PACK_FROM_STRIDE`] apart, else packed (on the calling thread unless
/// `parallel`).
pub enum OnceB<'a> {
    InPlace(Panels<'a>),
    Packed(PackedB),
}

impl<'a> OnceB<'a> {
    pub fn of(b: MatRef<'a>, parallel: bool) -> Self {
        Self::of_in(b, parallel, false)
    }

    /// [`OnceB::of`], or (`bf16`) always packed in bfloat16 pairs.
    pub fn of_in(b: MatRef<'a>, parallel: bool, bf16: bool) -> Self {
        if bf16 {
            return OnceB::Packed(match parallel {
                true => PackedB::pack_bf16(b),
                false => PackedB::pack_bf16_serial(b),
            });
        }
        match Panels::in_place(b).filter(|_| b.row_stride < PACK_FROM_STRIDE) {
            Some(panels) => OnceB::InPlace(panels),
            None if parallel => OnceB::Packed(PackedB::pack(b)),
            None => OnceB::Packed(PackedB::pack_serial(b)),
        }
    }
    pub fn panels(&self) -> Panels<'_> {
        match self {
            OnceB::InPlace(panels) => *panels,
            OnceB::Packed(b) => Panels::from(b),
        }
    }
}

// SAFETY: a `Panels` only reads through its pointer, and it borrows the
// values it reads (`'a`) as a shared slice would.
unsafe impl Send for Panels<'_> {}
unsafe impl Sync for Panels<'_> {}

/// Each panel (`k` rows of [`NR`]) of `N` matrices' buffers, the `N` side by side.
fn panels_of<const N: usize>(data: &mut [Vec<f32>; N], k: usize) -> Vec<[&mut [f32]; N]> {
    let mut cut: Vec<std::slice::ChunksMut<f32>> = data
        .iter_mut()
        .map(|d| d.chunks_mut(k.max(1) * NR))
        .collect();
    let panels = cut.first().map_or(0, |c| c.len());
    (0..panels)
        .map(|_| {
            std::array::from_fn(|m| match cut[m].next() {
                Some(p) => p,
                None => unreachable!("every matrix has the same panels"),
            })
        })
        .collect()
}

/// Rows `0..k` of panel `j` of `N` matrices `k x n`, from `fill(r, n0,
/// dsts)`, each zero-padded past column `n`.
fn fill_rows<const N: usize>(
    mut panel: [&mut [f32]; N],
    (j, k, n): (usize, usize, usize),
    fill: &mut impl FnMut(usize, usize, [&mut [f32]; N]),
) {
    let (n0, w) = (j * NR, NR.min(n - j * NR));
    for r in 0..k {
        let mut rows = panel.iter_mut();
        let dst = std::array::from_fn(|_| match rows.next() {
            Some(p) => &mut p[r * NR..r * NR + w],
            None => unreachable!("N panels"),
        });
        fill(r, n0, dst);
        if w < NR {
            panel
                .iter_mut()
                .for_each(|p| p[r * NR + w..(r + 1) * NR].fill(0.0));
        }
    }
}

/// Values of B (`k * n`) from which packing splits its panels among the threads.
const PARALLEL_PACK: usize = 1 << 16;

/// `fill(j, panel)` for each `panel_len`-value panel of `data`, on the
/// pool when `parallel`.
fn each_panel(
    data: &mut [f32],
    panel_len: usize,
    parallel: bool,
    fill: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    use rayon::prelude::*;
    let panel_len = panel_len.max(1);
    if parallel {
        crate::threads::install(|| {
            data.par_chunks_mut(panel_len)
                .enumerate()
                .for_each(|(j, p)| fill(j, p))
        });
    } else {
        data.chunks_mut(panel_len)
            .enumerate()
            .for_each(|(j, p)| fill(j, p));
    }
}

/// Panel `j` (columns `j * NR..`) of `b`'s rows, zero-padded past its last column.
fn fill_panel(b: &MatRef, j: usize, panel: &mut [f32]) {
    let k = b.rows;
    let (n0, w) = (j * NR, NR.min(b.cols - j * NR));
    if b.row_stride == 1 && b.col_stride >= k && k > 1 {
        // a transposed view (Wᵀ for dX): columns n0..n0+w are rows of
        // the stored matrix, turned in blocks
        let src = &b.data[n0 * b.col_stride..];
        super::transpose::transpose(src, w, k, b.col_stride, panel, NR);
        if w < NR {
            panel
                .chunks_exact_mut(NR)
                .for_each(|row| row[w..].fill(0.0));
        }
        return;
    }
    for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
        let base = p * b.row_stride + n0 * b.col_stride;
        if b.col_stride == 1 {
            row[..w].copy_from_slice(&b.data[base..base + w]);
        } else {
            for (c, v) in row[..w].iter_mut().enumerate() {
                *v = b.data[base + c * b.col_stride];
            }
        }
        row[w..].fill(0.0);
    }
}

/// Whether this CPU runs the packed kernel (AVX-512F, or AVX2 with FMA).
pub fn available() -> bool {
    gemm_micro::available()
}

/// Whether this CPU runs the bfloat16 kernel (AVX512-BF16): then
/// [`PackedB::pack_bf16`]'s panels multiply at about twice the float32 rate.
pub fn bf16_available() -> bool {
    gemm_bf16_micro::available()
}

/// Whether `a` can be read by the kernel: rows with unit column stride.
pub fn accepts(a: &MatRef) -> bool {
    a.col_stride == 1 || a.cols <= 1
}

/// Where the kernel reads A: each row in runs of contiguous values. A matrix
/// is one run per row; a convolution reads its input in place, one run per
/// kernel row (`kw * C_in` values of the input row), instead of an im2col copy.
/// (A transposed operand, as colsᵀ for dW, is built row-major first: read in
/// place, each of the kernel's loads fell on another cache line.)
///
/// # Safety
/// For every `i < rows()` and `k0 < depth()`, the values at `row_ptr(i, k0) +
/// j` for `k0 + j` up to the next multiple of `run()` (or `depth()`, if
/// nearer) must be readable `f32`s that nothing writes while the source is
/// borrowed.
pub unsafe trait RowSource: Sync {
    /// Rows of A (M).
    fn rows(&self) -> usize;
    /// Columns of A (K).
    fn depth(&self) -> usize;
    /// Length of the runs, which start at every multiple of it.
    fn run(&self) -> usize;
    /// Address of `A[i, k0]`.
    fn row_ptr(&self, i: usize, k0: usize) -> *const f32;
}

/// A row-major matrix as a [`RowSource`]: one run per row.
#[derive(Clone, Copy)]
pub struct RowMajor<'a>(MatRef<'a>);

impl<'a> RowMajor<'a> {
    /// `a` if its rows are contiguous and inside its slice.
    pub fn new(a: MatRef<'a>) -> Option<Self> {
        let fits = a.rows == 0
            || a.cols == 0
            || (a.rows - 1)
                .checked_mul(a.row_stride)
                .and_then(|v| v.checked_add(a.cols))
                .is_some_and(|end| end <= a.data.len());
        (accepts(&a) && fits).then_some(RowMajor(a))
    }
}

// SAFETY: `new` checked that row i < rows spans `i * row_stride ..
// i * row_stride + cols` inside the borrowed slice, and the run is the row.
unsafe impl RowSource for RowMajor<'_> {
    fn rows(&self) -> usize {
        self.0.rows
    }
    fn depth(&self) -> usize {
        self.0.cols
    }
    fn run(&self) -> usize {
        self.0.cols.max(1)
    }
    fn row_ptr(&self, i: usize, k0: usize) -> *const f32 {
        self.0
            .data
            .as_ptr()
            .wrapping_add(i * self.0.row_stride + k0)
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`) on the calling thread, `c`
/// row-major with row stride `c_row_stride`. Panics on an internal misuse: a
/// CPU without the packed kernel, `a` not row-major, or views that do not fit their slices.
pub fn gemm_packed_serial<'b>(
    a: MatRef,
    b: impl Into<Panels<'b>>,
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
) {
    let a = RowMajor::new(a).expect("gemm_packed: A must be row-major, inside its slice");
    gemm_rows_serial(&a, b, c, c_row_stride, accumulate)
}

/// Bytes of A per task of [`gemm_built_rows`], which stay in L2 from being
/// built to being read; fewer rows a task pay more for their calls.
const BUILT_A_BYTES: usize = 320 << 10;

thread_local! {
    /// Each thread's block of A for [`gemm_built_rows`], kept from call to call.
    static BUILT_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `C = A · B` (`c`: `m x b.n`, row-major) for an A that is built a block of
/// rows at a time: `build(rows, block, ld)` writes rows `rows` of A (`k`
/// values each, `ld` apart) into `block`. C's rows are split among the
/// threads in blocks of whole 6-row strips and 16-row transposes, each
/// block's A (at most [`BUILT_A_BYTES`]) built into a thread-private buffer
/// and multiplied while it is in L2. For a short, wide product (a dW over
/// few pixels) this replaces splitting the depth among the threads, each
/// with a whole partial C to add up. Every element sums over k in order,
/// whatever the split.
pub fn gemm_built_rows(
    c: &mut [f32],
    (m, k): (usize, usize),
    b: Panels,
    build: impl Fn(Range<usize>, &mut [f32], usize) + Sync,
) {
    use rayon::prelude::*;
    let n = b.n;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    let ld = k.next_multiple_of(16);
    let per = (BUILT_A_BYTES / 4 / ld / 48).max(1) * 48;
    let work = |(i, c_rows): (usize, &mut [f32])| {
        let rows = i * per..i * per + c_rows.len() / n;
        BUILT_A.with_borrow_mut(|a| {
            a.resize(rows.len() * ld, 0.0);
            build(rows.clone(), a, ld);
            let a = MatRef::strided(a, rows.len(), k, ld);
            let a = RowMajor::new(a).expect("a built block is row-major");
            gemm_rows_serial(&a, b, c_rows, n, false);
        })
    };
    crate::threads::install(|| {
        c[..m * n]
            .par_chunks_mut(per * n)
            .enumerate()
            .for_each(work)
    });
}

/// [`gemm_packed_serial`] with A from any [`RowSource`].
pub fn gemm_rows_serial<'b>(
    a: &impl RowSource,
    b: impl Into<Panels<'b>>,
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
) {
    gemm_rows_split(a, b, c, c_row_stride, accumulate, 1)
}

/// [`gemm_packed_serial`] with the work split over the thread pool: by rows
/// where there are enough, else by panels of columns. Every element of C is
/// computed by the same kernel calls in the same order whatever the split.
pub fn gemm_packed<'b>(
    a: MatRef,
    b: impl Into<Panels<'b>>,
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
) {
    let a = RowMajor::new(a).expect("gemm_packed: A must be row-major, inside its slice");
    gemm_rows(&a, b, c, c_row_stride, accumulate)
}

/// [`gemm_packed`] with A from any [`RowSource`].
pub fn gemm_rows<'b>(
    a: &impl RowSource,
    b: impl Into<Panels<'b>>,
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
) {
    let t = crate::threads::num_threads();
    gemm_rows_split(a, b, c, c_row_stride, accumulate, t)
}

/// [`gemm_rows`] with its work split into `t` parts (one part runs on the
/// calling thread).
fn gemm_rows_split<'b>(
    a: &impl RowSource,
    b: impl Into<Panels<'b>>,
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
    t: usize,
) {
    use rayon::prelude::*;
    let b: Panels = b.into();
    check(a, &b, c.len(), c_row_stride);
    let (m, panels) = (a.rows(), b.panels());
    if m == 0 || b.n == 0 {
        return;
    }
    let flops = 2 * m * b.n * b.k;
    let out = OutPtr(c.as_mut_ptr());
    let ldc = c_row_stride;
    // SAFETY (both calls of `run`): `check` proved that rows 0..m of C
    // (columns 0..n) lie in `c`, that A has the depth B has (the source
    // vouches for its rows), and that the CPU has the micro-kernel (AVX-512F or AVX2 + FMA). The parts are
    // disjoint blocks of C (distinct rows, or distinct panels of columns), so
    // no two threads write the same element, and `c` stays mutably borrowed
    // until they end.
    let run = match b.bf16 {
        true => run_bf16,
        false => run,
    };
    if t == 1 || flops < 2_000_000 {
        unsafe { run(a, &b, out, ldc, accumulate, 0..m, 0..panels) };
        return;
    }
    let parts: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = if m >= 8 * MR * t {
        let rows = m.div_ceil(t).div_ceil(MR) * MR;
        (0..m)
            .step_by(rows)
            .map(|r0| (r0..(r0 + rows).min(m), 0..panels))
            .collect()
    } else {
        let per = panels.div_ceil(t);
        (0..panels)
            .step_by(per)
            .map(|j0| (0..m, j0..(j0 + per).min(panels)))
            .collect()
    };
    crate::threads::install(|| {
        parts
            .into_par_iter()
            .for_each(|(rows, cols)| unsafe { run(a, &b, out, ldc, accumulate, rows, cols) })
    });
}

/// C's base pointer, shared by the threads that write disjoint blocks of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only dereferenced by `run`, whose callers give each
// thread a disjoint block of C.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

fn check(a: &impl RowSource, b: &Panels, c_len: usize, ldc: usize) {
    assert!(
        available(),
        "gemm_packed: this CPU has neither AVX-512F nor AVX2 + FMA"
    );
    if b.bf16 {
        assert!(bf16_available(), "gemm_packed: this CPU has no AVX512-BF16");
        // blocks of k start at even k (pairs of B's rows) only if runs do
        assert!(
            a.run().is_multiple_of(2) || a.run() >= a.depth(),
            "gemm_packed: bfloat16 needs runs of A of even length"
        );
    }
    assert_eq!(a.depth(), b.k, "gemm_packed: inner dimensions differ");
    let m = a.rows();
    assert!(
        m == 0 || b.n == 0 || (m - 1) * ldc + b.n <= c_len,
        "gemm_packed: C exceeds its slice"
    );
}

/// The depth of the blocks of k that the kernel sums in registers before
/// adding them into C, for a row-major A of depth `k`: a product cut along k
/// at multiples of it into calls that accumulate after the first sums every
/// element exactly as one call does.
pub fn k_block(k: usize) -> usize {
    k_blocks(k, k).map(|(_, kl)| kl).max().unwrap_or(1)
}

/// The k blocks of one micro-kernel call each: every run of A split into
/// equal blocks of at most [`KC_MAX`], in order.
fn k_blocks(k: usize, run: usize) -> impl Iterator<Item = (usize, usize)> {
    k_blocks_of(k, run, KC_MAX, 1)
}

/// Every run of A split into equal blocks of at most `kc_max` values, a
/// multiple of `unit` each but the last of a run, in order.
fn k_blocks_of(
    k: usize,
    run: usize,
    kc_max: usize,
    unit: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let run = run.max(1);
    (0..k).step_by(run).flat_map(move |s0| {
        let len = run.min(k - s0);
        let kc = len.div_ceil(len.div_ceil(kc_max)).next_multiple_of(unit);
        (s0..s0 + len)
            .step_by(kc)
            .map(move |k0| (k0, kc.min(s0 + len - k0)))
    })
}

/// Rows `rows` x panels `panels` of `C (+)= A · B`.
///
/// # Safety
/// Rows `rows` of C (columns `0..b.n`, at `out + row * ldc`) must be in
/// bounds, `rows` within `a.rows()`, `a.depth() == b.k`, no other thread may
/// touch this block of C, and the CPU must have the micro-kernel ([`available`]).
unsafe fn run(
    a: &impl RowSource,
    b: &Panels,
    out: OutPtr,
    ldc: usize,
    accumulate: bool,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
) {
    let k = b.k;
    if k == 0 {
        if !accumulate {
            for r in rows {
                let n0 = panels.start * NR;
                let n1 = (panels.end * NR).min(b.n);
                // SAFETY: row r, columns n0..n1 of C are in this caller's block.
                unsafe { std::slice::from_raw_parts_mut(out.0.add(r * ldc + n0), n1 - n0) }
                    .fill(0.0);
            }
        }
        return;
    }
    let kc_max = k_blocks(k, a.run()).map(|(_, kl)| kl).max().unwrap_or(1);
    let nc = (nc_bytes() / (kc_max * NR * 4)).max(1);
    for (k0, kl) in k_blocks(k, a.run()) {
        let load_c = accumulate || k0 > 0;
        for j0 in panels.clone().step_by(nc) {
            let j1 = (j0 + nc).min(panels.end);
            // the rows of the block at i0; rows past the last repeat it (the
            // kernel reads only the block's `mr`)
            let last = rows.end - 1;
            let block = |i0: usize| -> [*const f32; MR] {
                std::array::from_fn(|i| a.row_ptr((i0 + i).min(last), k0))
            };
            let mut ap = block(rows.start);
            for i0 in rows.clone().step_by(MR) {
                let mr = MR.min(rows.end - i0);
                // the next block's rows, fetched while the first panel runs
                let next = block(i0 + MR);
                for j in j0..j1 {
                    let n0 = j * NR;
                    let w = NR.min(b.n - n0);
                    let masks: [u16; NV] =
                        std::array::from_fn(|v| super::simd::lanes::mask(w.saturating_sub(16 * v)));
                    // SAFETY: rows i0..i0+mr of A, values k0..k0+kl, lie in
                    // one run (`k_blocks`), which the source vouches for; rows
                    // k0..k0+kl of panel j; rows i0..i0+mr, columns n0..n0+w of
                    // C: all inside the ranges the caller vouches for.
                    unsafe {
                        let bp = b.ptr.add(j * b.panel_step + k0 * b.row_step);
                        let cp = out.0.add(i0 * ldc + n0);
                        let next = (j == j0).then_some(&next);
                        let next_c = (i0 + MR < rows.end).then(|| cp.wrapping_add(MR * ldc));
                        gemm_micro::micro(
                            mr,
                            kl,
                            &ap,
                            next,
                            next_c,
                            (bp, b.row_step),
                            cp,
                            ldc,
                            masks,
                            load_c,
                        );
                    }
                }
                ap = next;
            }
        }
    }
}

/// [`run`] on bfloat16 pair panels: each `MR x kc` block of A is staged
/// into bfloat16 pairs once per pass over [`nc_bytes`] of panels.
///
/// # Safety
/// As [`run`], with `b.bf16`, A's runs of even length (or one run), and a
/// CPU with AVX512-BF16.
unsafe fn run_bf16(
    a: &impl RowSource,
    b: &Panels,
    out: OutPtr,
    ldc: usize,
    accumulate: bool,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
) {
    const KP_MAX: usize = KC_MAX_BF16 / 2;
    let k = b.k;
    if k == 0 {
        // SAFETY: forwarded; with k == 0 `run` only zeroes C's block
        unsafe { run(a, b, out, ldc, accumulate, rows, panels) };
        return;
    }
    let blocks = || k_blocks_of(k, a.run(), KC_MAX_BF16, 2);
    let kp_max = blocks().map(|(_, kl)| kl.div_ceil(2)).max().unwrap_or(1);
    let nc = (nc_bytes() / (kp_max * NR * 4)).max(1);
    let mut staged = [0u32; MR * KP_MAX];
    for (k0, kl) in blocks() {
        let load_c = accumulate || k0 > 0;
        let kp = kl.div_ceil(2);
        for j0 in panels.clone().step_by(nc) {
            let j1 = (j0 + nc).min(panels.end);
            for i0 in rows.clone().step_by(MR) {
                let mr = MR.min(rows.end - i0);
                let ap: [*const f32; MR] =
                    std::array::from_fn(|i| a.row_ptr((i0 + i).min(rows.end - 1), k0));
                // SAFETY: rows i0..i0+mr of A, values k0..k0+kl, lie in one
                // run (`k_blocks_of`), which the source vouches for; `staged`
                // holds MR rows of KP_MAX >= kp pairs; the caller vouches for
                // the CPU.
                unsafe { gemm_bf16_micro::stage(&ap, mr, kl, staged.as_mut_ptr(), KP_MAX) };
                for j in j0..j1 {
                    let n0 = j * NR;
                    let w = NR.min(b.n - n0);
                    let masks: [u16; NV] =
                        std::array::from_fn(|v| super::simd::lanes::mask(w.saturating_sub(16 * v)));
                    // SAFETY: k0 is even (blocks of a run of even length, or
                    // of the one run, are cut at multiples of 2), so pair rows
                    // k0/2..k0/2+kp of panel j exist (ceil(k/2) of them);
                    // rows i0..i0+mr, columns n0..n0+w of C are inside the
                    // caller's block; the staged rows hold kp pairs.
                    unsafe {
                        let bp = (b.ptr as *const u32).add(j * b.panel_step + k0 / 2 * b.row_step);
                        let cp = out.0.add(i0 * ldc + n0);
                        gemm_bf16_micro::micro(
                            mr,
                            kp,
                            (staged.as_ptr(), KP_MAX),
                            (bp, b.row_step),
                            cp,
                            ldc,
                            masks,
                            load_c,
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
