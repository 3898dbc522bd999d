//! Training progress: a bar with step, loss, metrics, samples/s and ETA on a
//! terminal; one plain line per epoch otherwise (logs, CI).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::fit::Verbosity;

pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    verbose: Verbosity,
    start: Instant,
    samples: usize,
    epoch: usize,
    epochs: usize,
    /// Samples a streaming source could not read this epoch.
    pub(crate) skipped: usize,
    /// Set when the epoch ends early: (steps done, steps in a full epoch).
    pub(crate) cut: Option<(usize, u64)>,
}

pub(crate) fn format_logs(logs: &BTreeMap<String, f32>) -> String {
    logs.iter()
        .filter(|(k, _)| k.as_str() != "learning_rate")
        .map(|(k, v)| format!("{k}: {v:.4}"))
        .collect::<Vec<_>>()
        .join(" - ")
}

impl Progress {
    pub(crate) fn new(verbose: Verbosity, epoch: usize, epochs: usize, steps: u64) -> Self {
        let bar = (verbose == Verbosity::Auto && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(steps);
            b.set_style(
                ProgressStyle::with_template("{prefix} {wide_bar} {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_prefix(format!("Epoch {}/{}", epoch + 1, epochs));
            b
        });
        Progress {
            bar,
            verbose,
            start: Instant::now(),
            samples: 0,
            epoch,
            epochs,
            skipped: 0,
            cut: None,
        }
    }

    fn skipped_note(&self) -> String {
        match self.skipped {
            0 => String::new(),
            1 => " - 1 unreadable image skipped".to_string(),
            n => format!(" - {n} unreadable images skipped"),
        }
    }

    pub(crate) fn step(&mut self, batch: usize, logs: &BTreeMap<String, f32>) {
        self.samples += batch;
        if let Some(b) = &self.bar {
            let rate = self.samples as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            b.set_message(format!(
                "{} - {rate:.0} samples/s{}",
                format_logs(logs),
                self.skipped_note()
            ));
            b.inc(1);
        }
    }

    pub(crate) fn finish(self, logs: &BTreeMap<String, f32>) {
        if self.verbose == Verbosity::Silent {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64();
        let cut = match self.cut {
            Some((done, of)) => format!(" (stopped after step {done} of {of})"),
            None => String::new(),
        };
        let line = format!(
            "Epoch {}/{}{cut} - {secs:.1}s - {:.0} samples/s - {}{}",
            self.epoch + 1,
            self.epochs,
            self.samples as f64 / secs.max(1e-9),
            format_logs(logs),
            self.skipped_note()
        );
        match self.bar {
            Some(b) => {
                b.finish_and_clear();
                eprintln!("{line}");
            }
            None => println!("{line}"),
        }
    }
}
