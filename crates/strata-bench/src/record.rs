//! One measured row, the timing helper and the table printer.

use serde::Serialize;
use std::time::Instant;

/// One benchmark result. `throughput` is higher-is-better, in `unit`
/// (GFLOP/s for kernels, images/s for models); `key` names the workload the
/// same way bench/torch_bench.py does, so bench/compare.py can pair rows.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub group: String,
    pub key: String,
    pub threads: usize,
    pub median_s: f64,
    pub min_s: f64,
    pub runs: usize,
    pub throughput: f64,
    pub unit: String,
    /// FLOPs of one run (kernels only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    /// Percent of the FMA peak for `threads` threads (kernels only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pct_peak: Option<f64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Model rows: the process's peak resident memory so far (MB), and its
    /// resident memory before the row built anything (the runtime's own share).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_rss_mb: Option<f64>,
    /// Training fed by a loader: the time blocked waiting for batches over
    /// the time in the steps, the longest single wait, the median step
    /// (without its wait) and the median step on a held batch with the
    /// loader stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wait_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain_step_s: Option<f64>,
}

/// Resident memory when `main` started, before any workload.
pub static BASE_RSS_MB: std::sync::OnceLock<f64> = std::sync::OnceLock::new();

/// `(VmHWM, VmRSS)` of this process in MB, from /proc/self/status (Linux).
pub fn rss_mb() -> (Option<f64>, Option<f64>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Times `f` after `warmup` untimed calls: returns (median, min) of `runs`
/// timed calls in seconds. `setup` runs before every call, untimed.
pub fn time_runs<S: FnMut(), F: FnMut()>(
    warmup: usize,
    runs: usize,
    mut setup: S,
    mut f: F,
) -> (f64, f64) {
    for _ in 0..warmup {
        setup();
        f();
    }
    let mut ts: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            setup();
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(|a, b| a.total_cmp(b));
    let n = ts.len();
    let median = if n % 2 == 1 {
        ts[n / 2]
    } else {
        0.5 * (ts[n / 2 - 1] + ts[n / 2])
    };
    (median, ts[0])
}

/// A kernel row: throughput in GFLOP/s and percent of `peak` (GFLOP/s).
pub fn kernel_record(
    group: &str,
    key: String,
    threads: usize,
    runs: usize,
    (median_s, min_s): (f64, f64),
    flops: f64,
    peak: f64,
) -> Record {
    let gflops = flops / median_s / 1e9;
    Record {
        group: group.into(),
        key,
        threads,
        median_s,
        min_s,
        runs,
        throughput: gflops,
        unit: "GFLOP/s".into(),
        flops: Some(flops),
        gflops: Some(gflops),
        pct_peak: Some(100.0 * gflops / peak),
        note: String::new(),
        peak_rss_mb: None,
        base_rss_mb: None,
        wait_fraction: None,
        max_wait_s: None,
        step_s: None,
        plain_step_s: None,
    }
}

/// A model row: throughput in images/s.
pub fn model_record(
    group: &str,
    key: String,
    threads: usize,
    runs: usize,
    (median_s, min_s): (f64, f64),
    images: usize,
) -> Record {
    Record {
        group: group.into(),
        key,
        threads,
        median_s,
        min_s,
        runs,
        throughput: images as f64 / median_s,
        unit: "images/s".into(),
        flops: None,
        gflops: None,
        pct_peak: None,
        note: String::new(),
        peak_rss_mb: rss_mb().0,
        base_rss_mb: BASE_RSS_MB.get().copied(),
        wait_fraction: None,
        max_wait_s: None,
        step_s: None,
        plain_step_s: None,
    }
}

/// Prints one row as soon as it is measured (results stream on long runs).
pub fn print_row(r: &Record) {
    let extra = match (r.gflops, r.pct_peak) {
        (Some(_), Some(p)) => format!("{p:6.1}% peak"),
        _ => String::new(),
    };
    println!(
        "{:<8} {:<44} {:>2}t {:>11.3} ms {:>10.2} {:<9} {}",
        r.group,
        r.key,
        r.threads,
        r.median_s * 1e3,
        r.throughput,
        r.unit,
        extra
    );
}

pub fn print_header() {
    println!(
        "{:<8} {:<44} {:>3} {:>14} {:>10} {:<9} of peak",
        "group", "workload", "thr", "median", "throughput", "unit"
    );
}
