//! strata-bench: throughput of strata's GEMM, convolutions and zoo models,
//! printed as a table and optionally written as JSON for bench/compare.py,
//! which runs bench/torch_bench.py on the same workloads in the same run.
//!
//! ```text
//! strata-bench [gemm] [conv] [conv-all] [resnet50-infer] [resnet50-train]
//!              [resnet50-frozen] [mnist-epoch] [loader] [resnet50-jpeg]
//!              [peak] [all]
//!              [--runs N] [--warmup N] [--train-warmup N] [--mnist-runs N]
//!              [--threads 1,2] [--jpeg-dir DIR] [--jpeg-count N]
//!              [--classes K] [--jpeg-steps N]
//!              [--peak GFLOPS_PER_THREAD] [--precision float32|mixed_bfloat16]
//!              [--json PATH]
//! strata-bench make-jpegs DIR [--count N] [--classes K]
//! strata-bench fingerprint [--ops-only]
//! ```
//!
//! Nothing here is a test: no timing is asserted anywhere.

mod conv_bench;
mod fingerprint;
mod gemm_bench;
mod jpegs;
mod loader_bench;
mod models;
mod peak;
mod record;

use record::{print_header, Record};
use std::process::ExitCode;

const COMMANDS: &[&str] = &[
    "gemm",
    "conv",
    "conv-all",
    "resnet50-infer",
    "resnet50-train",
    "resnet50-frozen",
    "mnist-epoch",
    "loader",
    "resnet50-jpeg",
    "peak",
];

const USAGE: &str = "usage: strata-bench <command>... [options]
commands:
  gemm             GEMM GFLOP/s: square 1024/2048 and ResNet-50 convs as GEMMs (batch 8)
  conv             conv2d fwd and fwd+bwd: ResNet-50's 7x7/2, 3x3 and 1x1 (56x56) at batch 8
  conv-all         conv2d fwd and fwd+bwd for all 23 distinct ResNet-50 convolutions, plus totals
  resnet50-infer   ResNet-50 forward, batch 1 and 8, 224x224
  resnet50-train   ResNet-50 forward+backward+SGD momentum step, batch 8
  resnet50-frozen  frozen ResNet-50 backbone + 3-class head training step, batch 16
  mnist-epoch      MNIST CNN, one epoch of 60k images, batch 128, Adam
  loader           images/s of ImageStream over one epoch of the JPEG folder: decode,
                   random resized crop 224, flip, normalise, batch 32 (not in 'all')
  resnet50-jpeg    resnet50-train's step fed from the JPEG folder through ImageStream,
                   with the time waiting for batches (not in 'all')
  peak             measured FMA peak only
  all              gemm conv-all and every model row but loader and resnet50-jpeg
  make-jpegs DIR   write the benchmark's JPEGs into DIR and stop (--count, --classes)
  fingerprint      hashes of the bits of convolution, BatchNorm, ResNet-50 and MNIST-CNN
                   results at 2 and 1 threads, to compare before and after a change
                   (--ops-only: the ops alone); times nothing
options:
  --runs N         timed runs per row, median reported (default 5)
  --warmup N       untimed runs before (default 1)
  --train-warmup N untimed training steps before the timed ones of resnet50-train,
                   resnet50-frozen and resnet50-jpeg (default 6: a training loop's first
                   steps are slower while its memory settles, in both engines)
  --mnist-runs N   timed MNIST epochs (default 3)
  --threads LIST   comma-separated thread counts (default: 1,2 for gemm, 2 otherwise;
                   'max' = all cores); loader and resnet50-jpeg use as many loader workers
  --jpeg-dir DIR   where generated JPEG folders are kept (default: the workspace's
                   target/bench-jpegs; the folder is DIR/n<count>-k<classes>)
  --jpeg-count N   JPEGs in the folder of loader and resnet50-jpeg (default 2000; also --count)
  --classes K      class sub-folders of that folder (default 10)
  --jpeg-steps N   timed steps of resnet50-jpeg, and as many on a held batch (default 10)
  --peak G         FMA peak per thread in GFLOP/s for '% of peak' (default: the nominal
                   258.5, i.e. 517 on 2 threads); 'measured' uses the best 1-thread FMA loop
  --conv-batch N   the batch of the conv and conv-all rows (default 8; keys then end in
                   ' bN')
  --precision P    float32 (default) or mixed_bfloat16: the policy of the ResNet-50 rows
                   (resnet50-infer, resnet50-train, resnet50-frozen), whose keys then end in
                   ' mixed_bfloat16', and what conv and conv-all multiply in (given, their
                   rows also time dX and dW alone); mixed_bfloat16 adds gemm's
                   gemm-packed-bf16 rows; the other rows stay float32
  --json PATH      write the results as JSON";

/// Options shared by all benchmarks.
pub struct Opts {
    pub runs: usize,
    pub warmup: usize,
    /// Untimed steps before the timed ones of the training rows.
    pub train_warmup: usize,
    pub mnist_runs: usize,
    /// Where generated JPEG folders are kept, and the folder's size.
    pub jpeg_dir: std::path::PathBuf,
    pub jpeg_count: usize,
    pub jpeg_classes: usize,
    /// Timed steps of `resnet50-jpeg`.
    pub jpeg_steps: usize,
    /// Measured single-thread FMA peak (GFLOP/s), best of several trials.
    pub measured_1t: Option<f64>,
    /// `--peak`: the single-thread peak given on the command line.
    pub peak_per_thread: Option<f64>,
    /// `--peak measured`: use `measured_1t` instead of the nominal peak.
    pub use_measured: bool,
    /// `--precision` (float32 when not given): the ResNet-50 rows' policy
    /// and what `conv` / `conv-all` / `gemm` multiply in.
    pub precision: Option<strata_core::Precision>,
    /// `--conv-batch`: the batch of the `conv` and `conv-all` rows.
    pub conv_batch: usize,
}

impl Opts {
    /// FMA peak for `t` threads in GFLOP/s: `t` times the single-thread peak
    /// (a hardware ceiling; a 2-thread measurement on a shared machine would
    /// report the neighbours' load instead).
    pub fn peak(&self, t: usize) -> f64 {
        let measured = self.measured_1t.filter(|_| self.use_measured);
        let one = self
            .peak_per_thread
            .or(measured)
            .unwrap_or(peak::NOMINAL_PEAK_1T);
        one * t as f64
    }
    fn peak_source(&self) -> &'static str {
        match (
            self.peak_per_thread,
            self.measured_1t.filter(|_| self.use_measured),
        ) {
            (Some(_), _) => "given with --peak",
            (None, Some(_)) => "measured on 1 thread, times the thread count",
            (None, None) => "nominal 258.5 GFLOP/s per thread",
        }
    }
}

struct Args {
    commands: Vec<String>,
    threads: Option<Vec<usize>>,
    json: Option<String>,
    /// `make-jpegs DIR`: the folder to write.
    make_jpegs: Option<String>,
    opts: Opts,
}

fn parse_usize(flag: &str, v: Option<String>) -> Result<usize, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse()
        .map_err(|_| format!("{flag}: '{v}' is not a count"))
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        commands: Vec::new(),
        threads: None,
        json: None,
        make_jpegs: None,
        opts: Opts {
            runs: 5,
            warmup: 1,
            train_warmup: 6,
            mnist_runs: 3,
            jpeg_dir: jpegs::default_root(),
            jpeg_count: 2000,
            jpeg_classes: 10,
            jpeg_steps: 10,
            measured_1t: None,
            use_measured: false,
            precision: None,
            conv_batch: conv_bench::BATCH,
            peak_per_thread: None,
        },
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--runs" => a.opts.runs = parse_usize("--runs", it.next())?.max(1),
            "--warmup" => a.opts.warmup = parse_usize("--warmup", it.next())?,
            "--train-warmup" => a.opts.train_warmup = parse_usize("--train-warmup", it.next())?,
            "--mnist-runs" => a.opts.mnist_runs = parse_usize("--mnist-runs", it.next())?.max(1),
            "--jpeg-dir" => a.opts.jpeg_dir = it.next().ok_or("--jpeg-dir needs a path")?.into(),
            "--jpeg-count" | "--count" => a.opts.jpeg_count = parse_usize(&arg, it.next())?.max(1),
            "--classes" => a.opts.jpeg_classes = parse_usize("--classes", it.next())?.max(1),
            "--jpeg-steps" => a.opts.jpeg_steps = parse_usize("--jpeg-steps", it.next())?.max(1),
            "make-jpegs" => a.make_jpegs = Some(it.next().ok_or("make-jpegs needs a folder")?),
            "--json" => a.json = Some(it.next().ok_or("--json needs a path")?),
            "--conv-batch" => a.opts.conv_batch = parse_usize(&arg, it.next())?.max(1),
            "--precision" => {
                let v = it
                    .next()
                    .ok_or("--precision needs float32 or mixed_bfloat16")?;
                a.opts.precision = Some(v.parse().map_err(|e| format!("--precision: {e}"))?);
            }
            "--peak" => {
                let v = it.next().ok_or("--peak needs a value")?;
                if v == "measured" {
                    a.opts.use_measured = true;
                } else {
                    a.opts.peak_per_thread = Some(
                        v.parse()
                            .map_err(|_| format!("--peak: '{v}' is not a number"))?,
                    );
                }
            }
            "--threads" => {
                let v = it.next().ok_or("--threads needs a list")?;
                let max = std::thread::available_parallelism().map_or(1, |n| n.get());
                let list = v
                    .split(',')
                    .map(|s| match s.trim() {
                        "max" => Ok(max),
                        s => s
                            .parse::<usize>()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or(format!("--threads: '{s}' is not a thread count")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                a.threads = Some(list);
            }
            "all" => a.commands.extend(
                [
                    "gemm",
                    "conv-all",
                    "resnet50-infer",
                    "resnet50-train",
                    "resnet50-frozen",
                    "mnist-epoch",
                ]
                .map(String::from),
            ),
            c if COMMANDS.contains(&c) => a.commands.push(c.to_string()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if a.commands.is_empty() && a.make_jpegs.is_none() {
        return Err("no command given".into());
    }
    // `conv-all` includes `conv`'s rows
    if a.commands.iter().any(|c| c == "conv-all") {
        a.commands.retain(|c| c != "conv");
    }
    let mut seen = Vec::new();
    a.commands.retain(|c| {
        let new = !seen.contains(c);
        seen.push(c.clone());
        new
    });
    Ok(a)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "fingerprint") {
        let ops_only = argv.iter().any(|a| a == "--ops-only");
        return match fingerprint::run(&[2, 1], ops_only) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("strata-bench: fingerprint: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(rss) = record::rss_mb().1 {
        let _ = record::BASE_RSS_MB.set(rss);
    }
    let mut args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("strata-bench: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    if let Some(dir) = &args.make_jpegs {
        let (n, k) = (args.opts.jpeg_count, args.opts.jpeg_classes);
        match jpegs::write_folder(std::path::Path::new(dir), n, k) {
            Ok(made) => println!(
                "# wrote {n} JPEGs in {k} classes to {dir}: {:.1} KB each on average, {:.1} s",
                made.bytes as f64 / n as f64 / 1024.0,
                made.secs
            ),
            Err(e) => {
                eprintln!("strata-bench: make-jpegs {dir}: {e}");
                return ExitCode::FAILURE;
            }
        }
        if args.commands.is_empty() {
            return ExitCode::SUCCESS;
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut all_threads: Vec<usize> = args.threads.clone().unwrap_or_else(|| vec![1, 2]);
    all_threads.push(1);
    all_threads.push(cores.min(2));
    all_threads.sort_unstable();
    all_threads.dedup();
    args.opts.measured_1t = peak::measure(1, 15);
    // for information only: what all threads reach together right now
    let measured_all = peak::measure(cores, 3);
    println!("# strata-bench on {} ({} cores)", cpu_model(), cores);
    for &t in &all_threads {
        println!(
            "# FMA peak {t} thread(s): {:.1} GFLOP/s ({})",
            args.opts.peak(t),
            args.opts.peak_source()
        );
    }
    if let Some(m) = args.opts.measured_1t {
        println!("# FMA loop on 1 thread measured {m:.1} GFLOP/s (best of 15)");
    }
    if let Some(m) = measured_all {
        println!("# FMA loop on all {cores} threads at once measured {m:.1} GFLOP/s now (shared machine)");
    }
    println!(
        "# median of {} runs after {} warm-up ({} for the training steps)",
        args.opts.runs, args.opts.warmup, args.opts.train_warmup
    );
    if args.opts.precision.unwrap_or_default().is_bf16() {
        println!(
            "# ResNet-50 rows under {} (bfloat16 kernel: {})",
            args.opts.precision.unwrap_or_default(),
            strata_core::precision::bf16_kernel()
        );
    }
    print_header();
    let mut out: Vec<Record> = Vec::new();
    let mut failures = Vec::new();
    for cmd in &args.commands {
        let threads =
            args.threads
                .clone()
                .unwrap_or_else(|| if cmd == "gemm" { vec![1, 2] } else { vec![2] });
        let res: Result<(), Box<dyn std::error::Error>> = match cmd.as_str() {
            "gemm" => {
                gemm_bench::run(&args.opts, &threads, &mut out);
                Ok(())
            }
            "conv" | "conv-all" => {
                conv_bench::run(&args.opts, &threads, cmd == "conv-all", &mut out);
                Ok(())
            }
            "peak" => Ok(()),
            model => threads.iter().try_for_each(|&t| match model {
                "resnet50-infer" => models::resnet50_infer(&args.opts, t, &mut out),
                "resnet50-train" => models::resnet50_train(&args.opts, t, &mut out),
                "resnet50-frozen" => models::resnet50_frozen(&args.opts, t, &mut out),
                "mnist-epoch" => models::mnist_epoch(&args.opts, t, &mut out),
                "loader" => loader_bench::loader(&args.opts, t, &mut out),
                "resnet50-jpeg" => loader_bench::resnet50_jpeg(&args.opts, t, &mut out),
                _ => unreachable!("commands are checked in parse_args"),
            }),
        };
        if let Err(e) = res {
            eprintln!("strata-bench: {cmd} failed: {e}");
            failures.push(format!("{cmd}: {e}"));
        }
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "engine": "strata",
            "cpu": cpu_model(),
            "cores": cores,
            "peak_gflops": all_threads.iter().map(|&t| (t.to_string(), args.opts.peak(t))).collect::<std::collections::BTreeMap<_, _>>(),
            "peak_source": args.opts.peak_source(),
            "peak_measured_1t": args.opts.measured_1t,
            "peak_measured_all_threads_now": measured_all,
            "runs": args.opts.runs,
            "warmup": args.opts.warmup,
            "train_warmup": args.opts.train_warmup,
            "precision": args.opts.precision.unwrap_or_default().as_str(),
            "bf16_kernel": strata_core::precision::bf16_kernel(),
            "jpeg_count": args.opts.jpeg_count,
            "jpeg_steps": args.opts.jpeg_steps,
            "failures": failures,
            "results": out,
        });
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("strata-bench: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("# wrote {path}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
