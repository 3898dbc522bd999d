//! `strata train` on several processes (README: "Training on several
//! processes and machines"): MPI when started by mpirun in a build with the
//! `mpi` feature, the `--workers N` relaunch under mpirun, the one error
//! line a failed run prints, and a debug record of every rank's weights.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use strata_nn::distributed::{hash_bytes, Distributed};
use strata_nn::model::{Callback, TrainingControl};
use strata_nn::Model;

use crate::model_arg::CliResult;

/// How to get a build that trains on several processes.
pub const BUILD_HINT: &str = "this strata was built without MPI: install OpenMPI (apt-get install -y libopenmpi-dev openmpi-bin libclang-dev) and build with `cargo build --release -p strata-cli --features mpi`";

/// This process's place in a data-parallel run.
pub struct Ranks {
    pub dist: Distributed,
    #[cfg(feature = "mpi")]
    run: strata_dist::mpi_collective::MpiRun,
}

impl Ranks {
    pub fn rank(&self) -> usize {
        self.dist.rank()
    }

    /// Ends the run: every rank calls it after a success (MPI_Finalize).
    pub fn finish(self) {
        #[cfg(feature = "mpi")]
        drop(self.run);
    }

    /// Ends the process after `error`: rank 0 alone prints an error that
    /// every rank found alike (they disagree, the batch does not split);
    /// any other is printed by its rank, named, and stops all ranks.
    pub fn fail(self, error: &str, agreed: bool) -> ! {
        let rank = self.rank();
        if agreed {
            if rank == 0 {
                eprintln!("error: train: {error}");
            }
            std::process::exit(1);
        }
        eprintln!("error: train: rank {rank}: {error}");
        let _ = std::io::stderr().flush();
        #[cfg(feature = "mpi")]
        self.run.abort(1);
        #[cfg(not(feature = "mpi"))]
        std::process::exit(1)
    }
}

/// Whether `--threads` or STRATA_NUM_THREADS chose the thread count.
fn threads_chosen() -> bool {
    std::env::var_os("STRATA_NUM_THREADS").is_some()
        || std::env::args().any(|a| a == "--threads" || a.starts_with("--threads="))
}

/// MPI, when this process is one rank of an mpirun launch; the kernels'
/// threads set to the cores shared among this machine's ranks unless
/// `--threads` says otherwise.
#[cfg(feature = "mpi")]
pub fn init() -> CliResult<Option<Ranks>> {
    let Some((run, collective)) = strata_dist::mpi_collective::init()? else {
        return Ok(None);
    };
    if !threads_chosen() {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        strata_core::set_num_threads(strata_dist::launch::threads_per_rank(
            cores,
            strata_dist::local_ranks(),
        ));
    }
    Ok(Some(Ranks {
        dist: Distributed::new(collective),
        run,
    }))
}

/// Without the `mpi` feature: a launch by mpirun is refused, since every
/// rank would train alone and write the same files.
#[cfg(not(feature = "mpi"))]
pub fn init() -> CliResult<Option<Ranks>> {
    let _ = threads_chosen;
    if strata_dist::launched_by_mpirun()
        && std::env::var("OMPI_COMM_WORLD_SIZE").is_ok_and(|n| n != "1")
    {
        return Err(BUILD_HINT.into());
    }
    Ok(None)
}

/// `strata train ... --workers N`: the same command as N ranks under
/// mpirun on this machine; returns only when it could not start (the
/// process exits with mpirun's status otherwise).
pub fn relaunch(workers: usize) -> CliResult<()> {
    if !cfg!(feature = "mpi") {
        return Err(format!("--workers: {BUILD_HINT}").into());
    }
    if strata_dist::launched_by_mpirun() {
        return Err("--workers is for a plain launch; under mpirun, -np sets the ranks".into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("--workers: cannot find strata: {e}"))?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (_, rest) = strata_dist::launch::strip_workers(&args);
    let argv = strata_dist::launch::mpirun_args(workers, &exe.display().to_string(), &rest);
    let mut child = std::process::Command::new("mpirun")
        .args(&argv)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("--workers: cannot run mpirun ({e}): install openmpi-bin (apt-get install -y libopenmpi-dev openmpi-bin)")
        })?;
    let mut report = strata_dist::launch::MpirunReport::default();
    if let Some(err) = child.stderr.take() {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if let Some(shown) = report.pass(&line) {
                eprintln!("{shown}");
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("--workers: mpirun: {e}"))?;
    if status.success() {
        std::process::exit(0);
    }
    if let Some(line) = report.error_line(status.code()) {
        eprintln!("{line}");
    }
    std::process::exit(status.code().filter(|&c| c != 0).unwrap_or(1));
}

/// A hash of every weight of `model` (moving statistics included).
pub fn weights_hash(model: &Model) -> u64 {
    let mut bytes = Vec::new();
    for (name, _, v) in model.weight_tensors() {
        bytes.extend_from_slice(name.as_bytes());
        for x in v {
            bytes.extend_from_slice(&x.to_bits().to_le_bytes());
        }
    }
    hash_bytes(&bytes)
}

/// STRATA_DEBUG_RANK_DIR: each rank writes `rank<R>.pid` at start and, after
/// every step, a line `<step> <weights hash>` to `rank<R>.steps`, so tests
/// can see that ranks hold the same bits and kill one mid-run.
pub struct StepRecord {
    file: std::fs::File,
    step: u64,
}

impl StepRecord {
    pub fn from_env(rank: usize) -> CliResult<Option<StepRecord>> {
        let Some(dir) = std::env::var_os("STRATA_DEBUG_RANK_DIR").map(PathBuf::from) else {
            return Ok(None);
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(
            dir.join(format!("rank{rank}.pid")),
            std::process::id().to_string(),
        )
        .map_err(|e| format!("{}: {e}", dir.display()))?;
        let p = dir.join(format!("rank{rank}.steps"));
        let file = std::fs::File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(Some(StepRecord { file, step: 0 }))
    }
}

impl Callback for StepRecord {
    fn on_batch_end(
        &mut self,
        _epoch: usize,
        _batch: usize,
        _logs: &BTreeMap<String, f32>,
        model: &mut Model,
        _c: &mut TrainingControl,
    ) -> strata_nn::Result<()> {
        self.step += 1;
        writeln!(self.file, "{} {:016x}", self.step, weights_hash(model))
            .and_then(|_| self.file.flush())
            .map_err(|e| strata_nn::NnError::io("STRATA_DEBUG_RANK_DIR", e))
    }
}
