//! Checkpoints while `train` runs: one after every epoch when `--checkpoint`
//! asks for it, and one when Ctrl-C arrives. The first Ctrl-C lets the step
//! finish, writes the checkpoint (with the history so far) and stops; more
//! Ctrl-Cs while it is written are ignored, so it is never cut short, and
//! only a third one outside the write quits at once, without a checkpoint.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use strata_nn::model::{Callback, TrainingControl};
use strata_nn::{History, Model};

/// Ctrl-Cs received, and whether a checkpoint is being written.
#[derive(Default)]
pub struct Interrupts {
    count: AtomicUsize,
    writing: AtomicBool,
}

/// Ctrl-Cs it takes to quit without a checkpoint.
const FORCE_AFTER: usize = 3;

impl Interrupts {
    /// Installs the Ctrl-C handler and returns its state.
    pub fn install() -> Arc<Interrupts> {
        let state = Arc::new(Interrupts::default());
        let handler = Arc::clone(&state);
        let _ = ctrlc::set_handler(move || {
            let n = handler.count.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 1 {
                eprintln!(
                    "interrupt: finishing this step and writing a checkpoint (Ctrl-C {} more times to quit without one)",
                    FORCE_AFTER - 1
                );
            } else if n >= FORCE_AFTER && !handler.writing.load(Ordering::SeqCst) {
                eprintln!("error: train: interrupted {n} times: quit without a checkpoint");
                std::process::exit(130);
            }
        });
        state
    }

    fn requested(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }
}

/// Where a run was stopped by Ctrl-C: (epoch, steps done in it).
pub type StoppedAt = Arc<Mutex<Option<(usize, usize)>>>;

/// The callback that writes the checkpoints and keeps the history they carry.
pub struct Checkpointer {
    /// `--checkpoint`: written after every epoch.
    pub every_epoch: Option<PathBuf>,
    /// Written when Ctrl-C arrives.
    pub on_interrupt: PathBuf,
    pub interrupts: Arc<Interrupts>,
    /// The epochs before a resume, then this run's.
    pub history: Arc<Mutex<History>>,
    pub stopped_at: StoppedAt,
    /// In a run on several processes: the ranks decide to stop together,
    /// and rank 0 alone writes.
    pub ranks: Option<strata_nn::distributed::Distributed>,
}

impl Checkpointer {
    fn write(
        &self,
        model: &Model,
        path: &PathBuf,
        epoch: usize,
        step: usize,
    ) -> strata_nn::Result<()> {
        if self.ranks.as_ref().is_some_and(|d| d.rank() != 0) {
            return Ok(());
        }
        self.interrupts.writing.store(true, Ordering::SeqCst);
        let history = self.history.lock().map(|h| h.clone()).unwrap_or_default();
        let result = model.save_checkpoint_with_history(path, epoch, step, Some(&history));
        self.interrupts.writing.store(false, Ordering::SeqCst);
        result
    }
}

impl Callback for Checkpointer {
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &BTreeMap<String, f32>,
        model: &mut Model,
        _c: &mut TrainingControl,
    ) -> strata_nn::Result<()> {
        if let Ok(mut h) = self.history.lock() {
            h.push(epoch, logs);
        }
        match &self.every_epoch {
            Some(p) => self.write(model, p, epoch + 1, 0),
            None => Ok(()),
        }
    }

    fn on_batch_end(
        &mut self,
        epoch: usize,
        batch: usize,
        _logs: &BTreeMap<String, f32>,
        model: &mut Model,
        control: &mut TrainingControl,
    ) -> strata_nn::Result<()> {
        let requested = match &self.ranks {
            Some(d) => d.any(self.interrupts.requested())?,
            None => self.interrupts.requested(),
        };
        if requested {
            let path = self.on_interrupt.clone();
            self.write(model, &path, epoch, batch + 1)?;
            if let Ok(mut at) = self.stopped_at.lock() {
                *at = Some((epoch, batch + 1));
            }
            control.stop_training = true;
        }
        Ok(())
    }
}
