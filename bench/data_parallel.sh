#!/usr/bin/env bash
# ResNet-50 training step at global batch 16 on this machine: one process
# with 2 threads against 2 MPI ranks with 1 thread each (the same code path,
# `mpirun -np 1` and `-np 2`), alternated over ROUNDS rounds; each run
# prints its median step past the first two and the part of it spent
# waiting on the all-reduce. Then the all-reduce's own speed over 2 ranks.
# Needs OpenMPI (see README, "Training on several processes and machines").
#   bench/data_parallel.sh [ROUNDS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
steps=${2:-10}
cargo build --release -q -p strata-cli --features mpi
cargo build --release -q -p strata-dist --features mpi --examples
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# 64 random 224x224x3 images and 3 classes, as .npy (standard library only)
python3 - "$dir" <<'PY'
import array, random, struct, sys
d = sys.argv[1]
def npy(path, descr, shape, data):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(data.tobytes())
rng = random.Random(7)
n = 64
x = array.array("f", (rng.random() for _ in range(n * 224 * 224 * 3)))
npy(f"{d}/x.npy", "<f4", (n, 224, 224, 3), x)
npy(f"{d}/y.npy", "<i8", (n,), array.array("q", (i % 3 for i in range(n))))
PY
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo
exe=$PWD/target/release/strata
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | xargs)
echo "CPU: $cpu, $(nproc) cores"
train() { # ranks threads
    (cd "$dir" && mpirun -np "$1" --bind-to none "$exe" --threads "$2" train resnet50 \
        --classes 3 --data x.npy --labels y.npy --batch-size 16 --steps "$steps" \
        --optimizer sgd --quiet --save "run-$1.safetensors") | grep "^data parallel"
}
for r in $(seq "$rounds"); do
    echo "round $r"
    train 1 2
    train 2 1
done
mpirun -np 2 --bind-to none target/release/examples/all_reduce_bandwidth
