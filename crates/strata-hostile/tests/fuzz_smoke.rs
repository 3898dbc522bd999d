//! The fuzzer in CI: every committed corpus file (seeds and the regression
//! inputs of past crashes) replays without a panic, and each target runs for
//! a bounded few seconds without finding one.

use std::path::PathBuf;
use std::time::Duration;

use strata_hostile::{corpus_files, fuzz, run_caught, FuzzConfig, Target};

fn corpus(target: Target) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target.name())
}

#[test]
fn committed_corpus_replays_without_panics() {
    let mut failures = Vec::new();
    for t in Target::ALL {
        let files = corpus_files(&corpus(t));
        assert!(!files.is_empty(), "no seed corpus for {}", t.name());
        for p in files {
            let bytes = std::fs::read(&p).expect("read a corpus file");
            if let Err(msg) = run_caught(t, &bytes) {
                failures.push(format!("{}: {msg}", p.display()));
            }
        }
    }
    assert!(failures.is_empty(), "panics:\n{}", failures.join("\n"));
}

#[test]
fn every_target_fuzzes_for_five_seconds_without_a_panic() {
    // the loop catches panics itself; keep their messages out of the output
    std::panic::set_hook(Box::new(|_| {}));
    // the targets side by side: 5 s each, all at once
    let runs: Vec<_> = Target::ALL
        .into_iter()
        .map(|t| {
            std::thread::spawn(move || {
                let mut cfg = FuzzConfig::new(t, Duration::from_secs(5));
                cfg.seed = 7;
                cfg.corpus = None; // built-in seeds only; nothing written
                (t, fuzz(&cfg))
            })
        })
        .collect();
    let mut found = Vec::new();
    for h in runs {
        let (t, r) = h.join().expect("a fuzz thread");
        assert!(r.execs > 50, "{}: only {} inputs ran", t.name(), r.execs);
        for m in r.messages {
            found.push(format!("{}: {m}", t.name()));
        }
    }
    let _ = std::panic::take_hook();
    assert!(
        found.is_empty(),
        "the fuzzer found panics:\n{}",
        found.join("\n")
    );
}
