//! [`Collective`] over MPI. The sum is fixed-order: each rank gathers every
//! rank's copy of its own chunk of the buffer (one all-to-all), adds them
//! in rank order, and all ranks gather the summed chunks (one all-gather):
//! the traffic of a reduce-scatter plus an all-gather (a ring all-reduce's),
//! every rank left with the same bits, and the same bits at every run for a
//! given rank count, whatever algorithm MPI would pick for `MPI_Allreduce`.

use std::mem::ManuallyDrop;
use std::sync::Arc;

use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::{Count, Threading};

use strata_nn::distributed::Collective;
use strata_nn::{NnError, Result};

use crate::chunk;

/// MPI, initialised for this process; finalised when dropped (every rank
/// must get there: on an error, exit the process without dropping it).
pub struct MpiRun {
    universe: Universe,
    threading: Threading,
}

/// One communicator of the run. It is never freed (MPI_Finalize releases
/// it): clones of the handle may outlive the `MpiRun`, and MPI_Comm_free
/// after MPI_Finalize aborts.
pub struct MpiCollective {
    comm: ManuallyDrop<SimpleCommunicator>,
    rank: usize,
    size: usize,
    /// Whether MPI may be called from several threads at once.
    multiple: bool,
}

// SAFETY: MPI is initialised with MPI_THREAD_MULTIPLE (checked in `init`; a
// communicator is only handed to another thread when it was granted), under
// which the MPI standard allows calls on one communicator from any thread;
// the handle itself is an immutable pointer to OpenMPI's communicator
// object, valid until MPI_Finalize, which `MpiRun` (dropped last, by the
// caller that holds both) performs. Concurrent collectives on one
// communicator are the caller's to avoid: the communication thread gets its
// own (`split_off`). Exercised by the distributed tests of strata-cli.
unsafe impl Send for MpiCollective {}
// SAFETY: as for Send.
unsafe impl Sync for MpiCollective {}

/// MPI, when this process was started by mpirun; `None` otherwise.
pub fn init() -> Result<Option<(MpiRun, Arc<MpiCollective>)>> {
    if !crate::launched_by_mpirun() {
        return Ok(None);
    }
    let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
        .ok_or_else(|| NnError::Ranks("MPI was initialised twice".into()))?;
    let world = universe.world();
    let comm = world.duplicate();
    let c = MpiCollective {
        rank: comm.rank() as usize,
        size: comm.size() as usize,
        comm: ManuallyDrop::new(comm),
        multiple: threading == Threading::Multiple,
    };
    Ok(Some((
        MpiRun {
            universe,
            threading,
        },
        Arc::new(c),
    )))
}

impl MpiRun {
    /// The thread support MPI granted.
    pub fn threading(&self) -> Threading {
        self.threading
    }

    /// Stops every rank at once (MPI_Abort), for an error on this rank
    /// alone that the others cannot know of.
    pub fn abort(&self, code: i32) -> ! {
        self.universe.world().abort(code)
    }
}

fn count(n: usize) -> Result<Count> {
    Count::try_from(n)
        .map_err(|_| NnError::Ranks(format!("a message of {n} values is too long for MPI")))
}

impl MpiCollective {
    /// The fixed-order sum of `data` over the ranks, in place.
    fn sum<T>(&self, data: &mut [T]) -> Result<()>
    where
        T: Equivalence + Copy + Default + std::ops::AddAssign,
    {
        let (n, len) = (self.size, data.len());
        if n == 1 || len == 0 {
            return Ok(());
        }
        let chunks: Vec<std::ops::Range<usize>> = (0..n).map(|r| chunk(len, r, n)).collect();
        let counts: Vec<Count> = chunks
            .iter()
            .map(|c| count(c.len()))
            .collect::<Result<_>>()?;
        let displs: Vec<Count> = chunks
            .iter()
            .map(|c| count(c.start))
            .collect::<Result<_>>()?;
        let mine = chunks[self.rank].clone();
        let m = mine.len();
        // every rank's copy of my chunk, in rank order
        let mut gathered = vec![T::default(); m * n];
        {
            let send = Partition::new(&data[..], counts.clone(), &displs[..]);
            let recv_counts = vec![count(m)?; n];
            let recv_displs: Vec<Count> = (0..n).map(|r| count(r * m)).collect::<Result<_>>()?;
            let mut recv = PartitionMut::new(&mut gathered[..], recv_counts, &recv_displs[..]);
            self.comm.all_to_all_varcount_into(&send, &mut recv);
        }
        let mut reduced = vec![T::default(); m];
        for part in gathered.chunks(m.max(1)).take(n) {
            for (o, &v) in reduced.iter_mut().zip(part) {
                *o += v;
            }
        }
        let mut out = PartitionMut::new(&mut data[..], counts, &displs[..]);
        self.comm.all_gather_varcount_into(&reduced[..], &mut out);
        Ok(())
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()> {
        self.sum(data)
    }
    fn all_reduce_sum_f64(&self, data: &mut [f64]) -> Result<()> {
        self.sum(data)
    }
    fn broadcast(&self, root: usize, data: &mut [f32]) -> Result<()> {
        if self.size > 1 && !data.is_empty() {
            self.comm.process_at_rank(root as i32).broadcast_into(data);
        }
        Ok(())
    }
    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<Vec<u64>>> {
        let k = values.len();
        let mut all = vec![0u64; k * self.size];
        self.comm.all_gather_into(values, &mut all[..]);
        Ok(all
            .chunks(k.max(1))
            .take(self.size)
            .map(|c| c.to_vec())
            .collect())
    }
    fn split_off(&self) -> Option<Arc<dyn Collective>> {
        if !self.multiple {
            return None;
        }
        let comm = self.comm.duplicate();
        Some(Arc::new(MpiCollective {
            rank: self.rank,
            size: self.size,
            comm: ManuallyDrop::new(comm),
            multiple: true,
        }))
    }
}
