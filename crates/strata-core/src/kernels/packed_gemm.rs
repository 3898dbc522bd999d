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
//! The micro-kernel is AVX-512 ([`available`] says whether this CPU has it);
//! callers fall back to [`super::gemm`] where it is not. Sums run over k in a
//! fixed order set only by K, so results do not depend on the thread count.

use std::ops::Range;

use super::gemm::MatRef;

/// Columns per packed panel: four AVX-512 vectors.
pub const NR: usize = 64;
/// Vectors per panel row.
const NV: usize = NR / 16;
/// Rows of A per micro-kernel call: 6 x 4 accumulators + 4 panel vectors + the
/// broadcast fit the 32 vector registers, and each broadcast feeds 4 FMAs.
const MR: usize = 6;
/// Longest stretch of k per micro-kernel call: an `MR x KC_MAX` block of A
/// (9 KiB) stays in the 32 KiB L1 while every panel streams past it.
const KC_MAX: usize = 384;
/// Panel rows ahead of the one in use that the micro-kernel prefetches.
const PREFETCH_K: usize = 4;
/// Bytes of packed B that one pass over A's rows reuses, kept in L2.
const NC_BYTES: usize = 384 << 10;

/// B (`k x n`) packed as `ceil(n / NR)` panels, each `k` rows of `NR` columns,
/// zero-padded past column `n`.
#[derive(Debug, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    data: Vec<f32>,
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

    fn pack_with(views: &[MatRef], parallel: bool) -> PackedB {
        use rayon::prelude::*;
        let n = views.first().map_or(0, |b| b.cols);
        assert!(
            views.iter().all(|b| b.cols == n),
            "pack: views differ in width"
        );
        let k: usize = views.iter().map(|b| b.rows).sum();
        let panels = n.div_ceil(NR);
        let mut data = super::buffers::dirty(panels * k * NR);
        if data.is_empty() {
            return PackedB { k, n, data };
        }
        let fill = |(j, panel): (usize, &mut [f32])| {
            let mut rest = panel;
            for b in views {
                let (panel, tail) = rest.split_at_mut(b.rows * NR);
                rest = tail;
                fill_panel(b, j, panel);
            }
        };
        if parallel && k * n >= 1 << 16 {
            crate::threads::install(|| data.par_chunks_mut(k * NR).enumerate().for_each(fill));
        } else {
            data.chunks_mut(k * NR).enumerate().for_each(fill);
        }
        PackedB { k, n, data }
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
        data.map(|data| PackedB { k, n, data })
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
        data.map(|data| PackedB { k, n, data })
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
            panel_step: b.k * NR,
            _values: std::marker::PhantomData,
        }
    }
}

/// Row stride (values) from which [`OnceB`] packs a B that could be read in
/// place: rows 4 KiB apart or more fall on few cache sets and evict each
/// other. A 1x1 dW's operand at batch 8, 14x14 1024 -> 256, dW alone,
/// median of 11: 4.36-4.52 -> 4.08-4.23 ms packed; 256 -> 1024 dX and dW
/// 7.68-8.04 -> 7.70-7.83; at 2 KiB apart (28x28 512 -> 128) packing lost,
/// 4.29-4.43 -> 4.50-4.52.
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

/// Whether this CPU runs the packed kernel (AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
/// CPU without AVX-512, `a` not row-major, or views that do not fit their slices.
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
/// built to being read. The stride-2 3x3 dW into ResNet-50's 7x7 stage
/// (colsᵀ, 4608 x 392), dW alone, median of 11 against the `gemm` crate's
/// 10.5-11.0 ms: 24 rows of A a task 11.1 ms, 48 10.0-10.6, 96 9.4, 192
/// 9.2, 288 9.3, 384 9.2.
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
    // vouches for its rows), and that the CPU has AVX-512F. The parts are
    // disjoint blocks of C (distinct rows, or distinct panels of columns), so
    // no two threads write the same element, and `c` stays mutably borrowed
    // until they end.
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
    assert!(available(), "gemm_packed: this CPU has no AVX-512F");
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
    let run = run.max(1);
    (0..k).step_by(run).flat_map(move |s0| {
        let len = run.min(k - s0);
        let kc = len.div_ceil(len.div_ceil(KC_MAX));
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
/// touch this block of C, and the CPU must have AVX-512F.
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
    let nc = (NC_BYTES / (kc_max * NR * 4)).max(1);
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
                        std::array::from_fn(|v| super::lanes::mask(w.saturating_sub(16 * v)));
                    // SAFETY: rows i0..i0+mr of A, values k0..k0+kl, lie in
                    // one run (`k_blocks`), which the source vouches for; rows
                    // k0..k0+kl of panel j; rows i0..i0+mr, columns n0..n0+w of
                    // C: all inside the ranges the caller vouches for.
                    unsafe {
                        let bp = b.ptr.add(j * b.panel_step + k0 * b.row_step);
                        let cp = out.0.add(i0 * ldc + n0);
                        let next = (j == j0).then_some(&next);
                        let next_c = (i0 + MR < rows.end).then(|| cp.wrapping_add(MR * ldc));
                        micro(
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

/// Dispatches to the micro-kernel for `mr` rows (1..=MR).
///
/// # Safety
/// As [`kernel`].
#[allow(clippy::too_many_arguments)]
unsafe fn micro(
    mr: usize,
    kc: usize,
    a: &[*const f32; MR],
    next: Option<&[*const f32; MR]>,
    next_c: Option<*mut f32>,
    b: (*const f32, usize),
    c: *mut f32,
    ldc: usize,
    masks: [u16; NV],
    load_c: bool,
) {
    macro_rules! go {
        ($($r:literal)*) => {
            match mr {
                // SAFETY: forwarded from the caller.
                $($r => unsafe { kernel::<$r>(kc, a, next, next_c, b, c, ldc, masks, load_c) },)*
                _ => unreachable!("micro-kernel rows {mr}"),
            }
        };
    }
    go!(1 2 3 4 5 6)
}

/// `R x NR` block of C (masked to the lanes in `masks`) `(+)=` the `R x kc`
/// block of A (row `i` from `rows[i]`, its values adjacent) times the
/// `kc x NR` panel rows at `b.0`, `b.1` values apart.
/// With `next` (the rows of the next block), those rows' first `kc` values
/// are prefetched as it goes: a panel of A with nothing else to reuse it (one
/// panel of B, as a 1x1 convolution to 64 channels) would otherwise wait on
/// memory at every new block. With `next_c` (the same columns of C in the
/// next block's rows), those lines are fetched for writing as it goes, so
/// the stores at the end of that call find them in cache instead of each
/// waiting for its line to arrive (a 1x1 convolution from 64 channels, with
/// 64 products per output, 25088x64x256: 165 -> 205 GFLOP/s). Both are only
/// prefetched, never read.
///
/// # Safety
/// `rows[i] + p` for `i < R`, `p < kc` and `b.0 + p*b.1 + l` for `l < NR`
/// must be readable; `c + i*ldc + 16*v + l` must be writable (and readable when
/// `load_c`) for every lane `l` set in `masks[v]`;
/// the CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize>(
    kc: usize,
    rows: &[*const f32; MR],
    next: Option<&[*const f32; MR]>,
    next_c: Option<*mut f32>,
    (b, ldb): (*const f32, usize),
    c: *mut f32,
    ldc: usize,
    masks: [u16; NV],
    load_c: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    let rows: [*const f32; R] = std::array::from_fn(|i| rows[i]);
    for p in 0..kc {
        // the next block's A a line (16 values) of each row at a time
        if p % 16 == 0 {
            if let Some(next) = next {
                for row in next {
                    // a prefetch never faults, whatever the address
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(p) as *const i8);
                }
            }
            // the next block's C, one vector column of its rows per line of A
            if let (Some(nc), true) = (next_c, p / 16 < NV) {
                for i in 0..MR {
                    let line = nc.wrapping_add(i * ldc + p) as *const i8;
                    _mm_prefetch::<_MM_HINT_ET0>(line);
                }
            }
        }
        // SAFETY: p < kc, so these reads are inside what the caller vouches for.
        unsafe {
            let ahead = b.wrapping_add((p + PREFETCH_K) * ldb) as *const i8;
            for v in 0..NV {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * v));
            }
            let bv: [__m512; NV] =
                std::array::from_fn(|v| _mm512_loadu_ps(b.add(p * ldb + 16 * v)));
            for i in 0..R {
                let av = _mm512_set1_ps(*rows[i].add(p));
                for v in 0..NV {
                    acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
                }
            }
        }
    }
    for (i, row) in acc.iter_mut().enumerate() {
        for (v, sum) in row.iter_mut().enumerate() {
            // wrapping: a vector's address may lie past C when its mask is empty
            let cv = c.wrapping_add(i * ldc + 16 * v);
            // SAFETY: masked loads and stores touch only the lanes set in the
            // masks, which the caller vouches for; unset lanes are not accessed.
            unsafe {
                if load_c {
                    *sum = _mm512_add_ps(_mm512_maskz_loadu_ps(masks[v], cv), *sum);
                }
                _mm512_mask_storeu_ps(cv, masks[v], *sum);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize>(
    _kc: usize,
    _rows: &[*const f32; MR],
    _next: Option<&[*const f32; MR]>,
    _next_c: Option<*mut f32>,
    _b: (*const f32, usize),
    _c: *mut f32,
    _ldc: usize,
    _masks: [u16; NV],
    _load_c: bool,
) {
    unreachable!("gemm_packed needs AVX-512F; callers check `available`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::matmul_reference;
    use crate::rng::Rng;

    fn rand(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.normal()).collect()
    }

    /// Every row count of the micro-kernel, column tails inside either half of a
    /// panel, several k blocks, strided A and C, accumulating or not, on one
    /// thread and split by rows or by columns: all equal the f64 triple loop.
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "needs a CPU with AVX-512")]
    fn matches_reference_on_tails_blocks_and_splits() {
        let mut rng = Rng::new(11);
        let shapes = [
            (4, 0, 5),
            (1, 1, 1),
            (5, 3, 7),
            (13, 40, 17),
            (12, 385, 32),
            (25, 800, 70),
            (200, 64, 33),
            (40, 300, 200),
            (700, 147, 64),
        ];
        for &(m, k, n) in &shapes {
            let lda = k + 3;
            let a = rand(m * lda, &mut rng);
            let b = rand(k * n, &mut rng);
            let av = MatRef::strided(&a, m, k, lda);
            let want = matmul_reference(av, MatRef::new(&b, k, n));
            let packed = PackedB::pack(MatRef::new(&b, k, n));
            // B given transposed packs to the same panels
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            assert_eq!(PackedB::pack(MatRef::new(&bt, n, k).t()).data, packed.data);
            for threads in [1, 2, 3] {
                for accumulate in [false, true] {
                    let ldc = n + 4;
                    let mut c = vec![1.0f32; m * ldc];
                    let src = RowMajor::new(av).unwrap();
                    gemm_rows_split(&src, &packed, &mut c[1..], ldc, accumulate, threads);
                    for r in 0..m {
                        for j in 0..ldc {
                            let got = c[r * ldc + j];
                            let expect = if (1..=n).contains(&j) {
                                want[r * n + j - 1] + if accumulate { 1.0 } else { 0.0 }
                            } else {
                                1.0
                            };
                            assert!(
                                (got - expect).abs() <= 1e-4 * (1.0 + expect.abs()),
                                "{m}x{k}x{n} t{threads} acc {accumulate} ({r},{j}): {got} vs {expect}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// B read in place (rows a stride apart, several k blocks and panels) gives
    /// the bits its packed copy gives, split or not; widths that are not whole
    /// panels, non-unit column steps and views past their slice are refused.
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "needs a CPU with AVX-512")]
    fn panels_in_place_match_packed_ones() {
        let mut rng = Rng::new(12);
        for &(m, k, n, ldb) in &[(7, 5, 64, 64), (40, 400, 128, 200), (13, 900, 192, 192)] {
            let a = rand(m * k, &mut rng);
            let b = rand(k * ldb, &mut rng);
            let bv = MatRef::strided(&b, k, n, ldb);
            let src = RowMajor::new(MatRef::new(&a, m, k)).unwrap();
            let in_place = Panels::in_place(bv).unwrap();
            let packed = PackedB::pack(bv);
            for threads in [1, 2] {
                let (mut c1, mut c2) = (vec![0f32; m * n], vec![0f32; m * n]);
                gemm_rows_split(&src, in_place, &mut c1, n, false, threads);
                gemm_rows_split(&src, &packed, &mut c2, n, false, threads);
                assert_eq!(c1, c2, "{m}x{k}x{n} ldb {ldb} t{threads}");
            }
        }
        let b = vec![0f32; 64 * 130];
        assert!(Panels::in_place(MatRef::new(&b, 64, 130)).is_none());
        assert!(Panels::in_place(MatRef::new(&b, 130, 64).t()).is_none());
        assert!(Panels::in_place(MatRef::strided(&b, 64, 64, 200)).is_none());
    }

    /// A stored run-major: run `j` of every row together, as a convolution's
    /// kernel rows come from different input rows.
    struct RunMajor {
        data: Vec<f32>,
        rows: usize,
        depth: usize,
        run: usize,
    }

    // SAFETY: `data` holds `ceil(depth / run)` blocks of `rows * run` values,
    // and run `j` of row `i` starts at `(j * rows + i) * run`.
    unsafe impl RowSource for RunMajor {
        fn rows(&self) -> usize {
            self.rows
        }
        fn depth(&self) -> usize {
            self.depth
        }
        fn run(&self) -> usize {
            self.run
        }
        fn row_ptr(&self, i: usize, k0: usize) -> *const f32 {
            let (j, o) = (k0 / self.run, k0 % self.run);
            self.data[(j * self.rows + i) * self.run + o..].as_ptr()
        }
    }

    /// Runs shorter and longer than a k block (split in equal blocks) and a
    /// Views stacked (plain, transposed, strided) pack as the matrix they
    /// stack, built first: widths below and past a panel.
    #[test]
    fn pack_stacked_matches_packing_the_stack() {
        let mut rng = Rng::new(16);
        for n in [5, 64, 70, 130] {
            let plain = rand(7 * n, &mut rng);
            let stored = rand(n * 20, &mut rng); // its transpose is 20 x n
            let wide = rand(3 * (n + 9), &mut rng); // 3 x n inside rows of n + 9
            let views = [
                MatRef::new(&plain, 7, n),
                MatRef::new(&stored, n, 20).t(),
                MatRef::strided(&wide, 3, n, n + 9),
            ];
            let mut stack = Vec::new();
            for v in &views {
                for r in 0..v.rows {
                    stack.extend((0..n).map(|c| v.data[r * v.row_stride + c * v.col_stride]));
                }
            }
            let want = PackedB::pack(MatRef::new(&stack, 30, n));
            let got = PackedB::pack_stacked(&views);
            assert_eq!((got.rows(), got.cols()), (30, n));
            assert_eq!(got.data, want.data, "n {n}");
        }
    }

    /// `build` writes the same panels as packing the matrix it describes,
    /// zero padding included, for widths below, at and past one panel.
    #[test]
    fn build_matches_pack() {
        let mut rng = Rng::new(15);
        for &(k, n) in &[(1, 1), (7, 64), (5, 70), (33, 130), (0, 9)] {
            let b = rand(k * n, &mut rng);
            let built = PackedB::build(k, n, |r, n0, dst| {
                dst.copy_from_slice(&b[r * n + n0..][..dst.len()])
            });
            let packed = PackedB::pack(MatRef::new(&b, k, n));
            assert_eq!((built.rows(), built.cols()), (k, n));
            assert_eq!(built.data, packed.data, "k {k} n {n}");
        }
    }

    /// last run cut short by the depth: all equal the dense product.
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "needs a CPU with AVX-512")]
    fn row_sources_in_runs_match_the_dense_product() {
        let mut rng = Rng::new(14);
        for &(m, k, n, run) in &[(13, 30, 70, 7), (50, 900, 64, 500), (20, 1000, 20, 1000)] {
            let dense = rand(m * k, &mut rng);
            let runs = k.div_ceil(run);
            let mut data = vec![0.0; runs * m * run];
            for i in 0..m {
                for p in 0..k {
                    data[((p / run) * m + i) * run + p % run] = dense[i * k + p];
                }
            }
            let src = RunMajor {
                data,
                rows: m,
                depth: k,
                run,
            };
            let b = rand(k * n, &mut rng);
            let want = matmul_reference(MatRef::new(&dense, m, k), MatRef::new(&b, k, n));
            let packed = PackedB::pack(MatRef::new(&b, k, n));
            assert_eq!(
                PackedB::pack_serial(MatRef::new(&b, k, n)).data,
                packed.data
            );
            for t in [1, 2] {
                let mut c = vec![0.0; m * n];
                gemm_rows_split(&src, &packed, &mut c, n, false, t);
                for (g, w) in c.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{m}x{k}x{n} run {run}: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The split over threads changes which thread computes an element, never
    /// how: results are bitwise equal for every thread count.
    #[test]
    #[cfg_attr(not(host_avx512), ignore = "needs a CPU with AVX-512")]
    fn bitwise_equal_for_every_thread_count() {
        let mut rng = Rng::new(12);
        for &(m, k, n) in &[(500, 900, 96), (30, 1000, 256)] {
            let a = rand(m * k, &mut rng);
            let b = PackedB::pack(MatRef::new(&rand(k * n, &mut rng), k, n));
            let run = |t: usize| {
                let mut c = vec![0.0; m * n];
                let src = RowMajor::new(MatRef::new(&a, m, k)).unwrap();
                gemm_rows_split(&src, &b, &mut c, n, false, t);
                c
            };
            let one = run(1);
            let mut serial = vec![0.0; m * n];
            gemm_packed_serial(MatRef::new(&a, m, k), &b, &mut serial, n, false);
            assert_eq!(one, serial);
            for t in [2, 3, 4] {
                assert_eq!(run(t), one, "{m}x{k}x{n} threads {t}");
            }
        }
    }

    #[test]
    #[ignore = "timing: cargo test --release -p strata-core timing_packed -- --ignored --nocapture"]
    fn timing_packed_vs_crate() {
        use crate::kernels::gemm::gemm;
        use std::time::Instant;
        let mut rng = Rng::new(1);
        for &(m, k, n) in &[
            (6272, 576, 64),
            (6272, 64, 256),
            (1568, 1152, 128),
            (1568, 512, 128),
            (392, 4608, 512),
            (392, 512, 2048),
            (49, 4608, 512),
            (25088, 147, 64),
            (2048, 2048, 2048),
        ] {
            let a = rand(m * k, &mut rng);
            let b = rand(k * n, &mut rng);
            let mut c = vec![0.0; m * n];
            let flops = 2.0 * (m * k * n) as f64;
            let time = |f: &mut dyn FnMut()| {
                f();
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t = Instant::now();
                    f();
                    best = best.min(t.elapsed().as_secs_f64());
                }
                flops / best / 1e9
            };
            let packed = PackedB::pack(MatRef::new(&b, k, n));
            let ours = time(&mut || gemm_packed(MatRef::new(&a, m, k), &packed, &mut c, n, false));
            let with_pack = time(&mut || {
                let p = PackedB::pack(MatRef::new(&b, k, n));
                gemm_packed(MatRef::new(&a, m, k), &p, &mut c, n, false)
            });
            let theirs = time(&mut || {
                gemm(
                    MatRef::new(&a, m, k),
                    MatRef::new(&b, k, n),
                    &mut c,
                    n,
                    false,
                )
            });
            eprintln!(
                "{m}x{k}x{n}: packed {ours:.0} GFLOP/s (with packing {with_pack:.0}), crate {theirs:.0}"
            );
        }
    }
}
