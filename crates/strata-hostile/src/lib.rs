//! strata-hostile: the robustness suite. Untrusted files must never crash
//! strata: every malformed input gives a clean error naming the file and the
//! field, and nothing allocates what a header merely claims.
//!
//! This library is the fuzzer (stable Rust, no cargo-fuzz): [`Target`] feeds
//! bytes to one in-memory parser, [`mutate`] derives new inputs from seeds,
//! [`fuzz`] loops for a time budget and saves every input that panics. The
//! `fuzz` binary drives it from the command line; `tests/` hold the hostile
//! files, the property tests and a short fuzz smoke run.

pub mod mutate;
pub mod seeds;
pub mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use mutate::{mutate, XorShift};
pub use targets::{run_target, Target};

/// What one fuzzing session did.
#[derive(Debug, Default, Clone)]
pub struct FuzzReport {
    /// Inputs executed.
    pub execs: u64,
    /// Inputs that parsed without error.
    pub accepted: u64,
    /// Files written for inputs that panicked.
    pub crashes: Vec<PathBuf>,
    /// The panic messages, one per crash file.
    pub messages: Vec<String>,
}

/// Runs one input through `target`, catching a panic. `Ok(true)`: accepted,
/// `Ok(false)`: rejected with an error, `Err(message)`: it panicked.
pub fn run_caught(target: Target, bytes: &[u8]) -> Result<bool, String> {
    match std::panic::catch_unwind(|| run_target(target, bytes)) {
        Ok(accepted) => Ok(accepted),
        Err(payload) => Err(panic_message(payload.as_ref())),
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// The seed inputs of `target`: the built-in ones plus every file in
/// `corpus` (crash files included, so a found crash keeps being exercised).
pub fn load_seeds(target: Target, corpus: Option<&Path>) -> Vec<Vec<u8>> {
    let mut seeds = seeds::builtin(target);
    if let Some(dir) = corpus {
        for p in corpus_files(dir) {
            if let Ok(b) = std::fs::read(&p) {
                seeds.push(b);
            }
        }
    }
    seeds
}

/// The regular files in `dir`, sorted (hidden files skipped).
pub fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                !p.file_name()
                    .map(|n| n.to_string_lossy().starts_with('.'))
                    .unwrap_or(true)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// 64-bit FNV-1a, to name crash files by content.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Options of a fuzzing session.
#[derive(Debug, Clone)]
pub struct FuzzConfig {
    pub target: Target,
    pub duration: Duration,
    /// Seed files are read from here and crash files written here.
    pub corpus: Option<PathBuf>,
    /// Generator seed (same seed, same inputs).
    pub seed: u64,
    /// Write each input to this file before running it, so an abort that no
    /// `catch_unwind` can stop (allocation failure, stack overflow) still
    /// leaves the input behind for the supervisor. Put it on a tmpfs: one
    /// write per input.
    pub current: Option<PathBuf>,
    /// Largest input generated.
    pub max_len: usize,
}

impl FuzzConfig {
    pub fn new(target: Target, duration: Duration) -> Self {
        FuzzConfig {
            target,
            duration,
            corpus: None,
            seed: 0x5eed,
            current: None,
            max_len: 64 * 1024,
        }
    }
}

/// Mutates seeds and runs them through the target until the time is up.
/// Panicking inputs are saved as `<corpus>/crash-<hash>` (when a corpus is
/// given) and reported; the loop goes on after a panic.
pub fn fuzz(cfg: &FuzzConfig) -> FuzzReport {
    let seeds = load_seeds(cfg.target, cfg.corpus.as_deref());
    let mut rng = XorShift::new(cfg.seed);
    let mut report = FuzzReport::default();
    let start = Instant::now();
    let mut seen = std::collections::HashSet::new();
    // inputs that were accepted join the pool (a poor man's coverage signal:
    // valid inputs are the interesting ones to mutate further)
    let mut pool: Vec<Vec<u8>> = seeds.clone();
    while start.elapsed() < cfg.duration {
        let base = &pool[rng.below(pool.len())];
        let other = &pool[rng.below(pool.len())];
        let input = mutate(cfg.target, base, other, &mut rng, cfg.max_len);
        if let Some(c) = &cfg.current {
            let _ = std::fs::write(c, &input);
        }
        report.execs += 1;
        match run_caught(cfg.target, &input) {
            Ok(true) => {
                report.accepted += 1;
                if pool.len() < 4096 && input.len() <= cfg.max_len && rng.below(8) == 0 {
                    pool.push(input);
                }
            }
            Ok(false) => {}
            Err(msg) => {
                let h = fnv1a(&input);
                if seen.insert(h) {
                    if let Some(dir) = &cfg.corpus {
                        let p = dir.join(format!("crash-{h:016x}"));
                        if std::fs::write(&p, &input).is_ok() {
                            report.crashes.push(p);
                        }
                    }
                    report.messages.push(msg);
                }
            }
        }
    }
    if let Some(c) = &cfg.current {
        let _ = std::fs::remove_file(c);
    }
    report
}
