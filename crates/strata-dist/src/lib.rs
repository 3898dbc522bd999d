//! Data-parallel training for strata: the [`strata_nn::distributed::Collective`]
//! over MPI (cargo feature `mpi`, rsmpi on the system's OpenMPI), the
//! fixed-order reduction it uses, and the `--workers` launcher. The default
//! build has no MPI in it.

pub mod launch;
#[cfg(feature = "mpi")]
pub mod mpi_collective;

/// The part of a buffer of `len` values that rank `r` of `n` reduces:
/// `[r·len/n, (r+1)·len/n)`.
pub fn chunk(len: usize, r: usize, n: usize) -> std::ops::Range<usize> {
    let n = n.max(1);
    (r * len / n)..((r + 1) * len / n)
}

/// Whether this process was started by mpirun (OpenMPI's or a PMI launcher's
/// variables are set).
pub fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Ranks on this machine, as mpirun tells them.
pub fn local_ranks() -> usize {
    std::env::var("OMPI_COMM_WORLD_LOCAL_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_tile_the_buffer() {
        let parts: Vec<_> = (0..3).map(|r| chunk(10, r, 3)).collect();
        assert_eq!(parts, vec![0..3, 3..6, 6..10]);
        assert_eq!(chunk(2, 3, 4), 1..2);
        assert_eq!(chunk(2, 0, 4), 0..0);
    }
}
