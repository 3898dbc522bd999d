//! `fuzz --target idx|npy|safetensors|spec|onnx --seconds N --corpus DIR [--seed S]`
//! (`--write-seeds` writes the built-in seeds into DIR as `seed-<i>` and exits)
//!
//! Mutates the seeds (built-in plus DIR's files) for N seconds and saves every
//! input that panics as `DIR/crash-<hash>`. The fuzzing runs in a child
//! process (this same binary with `--worker`) under a 4 GB address-space
//! limit when `prlimit` is available, so an input that makes strata abort
//! (allocation failure, stack overflow: nothing `catch_unwind` can stop) is
//! saved too, as `DIR/crash-abort-<hash>`, and fuzzing goes on.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use strata_hostile::{fnv1a, fuzz, FuzzConfig, Target};

struct Args {
    target: Target,
    seconds: u64,
    corpus: PathBuf,
    seed: u64,
    worker: bool,
    current: Option<PathBuf>,
    write_seeds: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut target = None;
    let mut seconds = 60;
    let mut corpus = None;
    let mut seed = 1;
    let mut worker = false;
    let mut current = None;
    let mut write_seeds = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().ok_or(format!("{flag} needs a value"));
        match a.as_str() {
            "--target" => {
                let v = value("--target")?;
                target = Some(Target::from_name(&v).ok_or(format!(
                    "unknown target '{v}' (idx|npy|safetensors|spec|onnx)"
                ))?);
            }
            "--seconds" => {
                seconds = value("--seconds")?
                    .parse()
                    .map_err(|_| "--seconds needs a whole number".to_string())?
            }
            "--corpus" => corpus = Some(PathBuf::from(value("--corpus")?)),
            "--seed" => {
                seed = value("--seed")?
                    .parse()
                    .map_err(|_| "--seed needs a whole number".to_string())?
            }
            "--worker" => worker = true,
            "--write-seeds" => write_seeds = true,
            "--current" => current = Some(PathBuf::from(value("--current")?)),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let target = target.ok_or("--target is required")?;
    let corpus = corpus.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target.name())
    });
    Ok(Args {
        target,
        seconds,
        corpus,
        seed,
        worker,
        current,
        write_seeds,
    })
}

fn worker(a: &Args) -> ExitCode {
    // panics are expected and reported by the loop; keep stderr quiet
    std::panic::set_hook(Box::new(|_| {}));
    let mut cfg = FuzzConfig::new(a.target, Duration::from_secs(a.seconds));
    cfg.corpus = Some(a.corpus.clone());
    cfg.seed = a.seed;
    cfg.current = a.current.clone();
    let r = fuzz(&cfg);
    println!(
        "fuzz {}: {} execs in {} s ({} accepted), {} crash(es)",
        a.target.name(),
        r.execs,
        a.seconds,
        r.accepted,
        r.crashes.len()
    );
    for (p, m) in r.crashes.iter().zip(&r.messages) {
        println!("  {}: {}", p.display(), m.lines().next().unwrap_or(""));
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&a.corpus) {
        eprintln!("error: {}: {e}", a.corpus.display());
        return ExitCode::FAILURE;
    }
    if a.write_seeds {
        for (i, s) in strata_hostile::seeds::builtin(a.target).iter().enumerate() {
            let p = a.corpus.join(format!("seed-{i}"));
            if let Err(e) = std::fs::write(&p, s) {
                eprintln!("error: {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    if a.worker {
        return worker(&a);
    }
    // supervisor: restart the worker after an abort, keeping its last input
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot find this executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let have_prlimit = Command::new("prlimit").arg("--version").output().is_ok();
    // the worker's last input, on a tmpfs when there is one (written per input)
    let shm = PathBuf::from("/dev/shm");
    let scratch = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    let current = scratch.join(format!(
        "strata-fuzz-{}-{}.current",
        a.target.name(),
        std::process::id()
    ));
    let start = Instant::now();
    let total = Duration::from_secs(a.seconds);
    let mut round = 0u64;
    let mut aborts = 0;
    while start.elapsed() + Duration::from_secs(1) < total {
        let left = (total - start.elapsed()).as_secs().max(1);
        let mut cmd = if have_prlimit {
            let mut c = Command::new("prlimit");
            c.arg("--as=4000000000").arg("--").arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(["--worker", "--target", a.target.name(), "--seconds"])
            .arg(left.to_string())
            .arg("--corpus")
            .arg(&a.corpus)
            .arg("--seed")
            .arg((a.seed + round).to_string())
            .arg("--current")
            .arg(&current);
        round += 1;
        let status = match cmd.status() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot run the worker: {e}");
                return ExitCode::FAILURE;
            }
        };
        if status.success() {
            break;
        }
        aborts += 1;
        match std::fs::read(&current) {
            Ok(input) => {
                let p = a.corpus.join(format!("crash-abort-{:016x}", fnv1a(&input)));
                let _ = std::fs::write(&p, &input);
                let _ = std::fs::remove_file(&current);
                println!("worker aborted ({status}); input saved as {}", p.display());
            }
            Err(_) => println!("worker aborted ({status}); no input left behind"),
        }
        if aborts > 50 {
            eprintln!("error: more than 50 aborts, stopping");
            return ExitCode::FAILURE;
        }
    }
    println!("fuzz {}: done, {aborts} abort(s)", a.target.name());
    ExitCode::SUCCESS
}
