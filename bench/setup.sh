#!/usr/bin/env bash
# Creates the Python virtual environment for the PyTorch / onnxruntime side of
# the benchmark, OUTSIDE the repository. Re-running it is cheap (pip skips
# what is installed).
#
#   STRATA_BENCH_VENV  where the venv goes (default ~/.cache/strata-bench-venv)
#   PYTHON             interpreter to build it from (default python3)
set -euo pipefail
VENV="${STRATA_BENCH_VENV:-$HOME/.cache/strata-bench-venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip
# CPU-only torch wheel: the CUDA build is gigabytes larger and of no use here.
"$VENV/bin/python" -m pip install torch --index-url https://download.pytorch.org/whl/cpu \
    || "$VENV/bin/python" -m pip install torch
"$VENV/bin/python" -m pip install numpy onnx onnxruntime onnxscript
"$VENV/bin/python" -c 'import torch, onnxruntime, numpy; print("torch", torch.__version__, "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__)'
echo "venv ready: $VENV"
