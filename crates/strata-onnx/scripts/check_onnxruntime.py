#!/usr/bin/env python3
"""Run strata's exported ONNX files in onnxruntime and compare with strata.

Run on demand (no test or benchmark calls it). Needs: pip install onnxruntime numpy

For every MODEL.onnx in FOLDER the script reads, beside it:

  MODEL.in.npy                 the input batch (NHWC float32, as `strata predict`
                               takes it), or MODEL.in.<NAME>.npy per graph input
                               for a model with several inputs;
  MODEL.out.npy                strata's output for that batch (the first graph
                               output), and MODEL.out.<NAME>.npy for others;

runs MODEL.onnx on the inputs with onnxruntime (CPU) and prints, per output,
the largest absolute difference and that divided by the largest |strata| value.
It exits 1 if any relative difference exceeds --tolerance (default 1e-4).

Making the files with the command line:

  strata export MODEL --weights W.safetensors --output out/m.onnx
  python check_onnxruntime.py out --write-inputs        # random m.in.npy, batch 2
  strata predict MODEL --weights W.safetensors --input out/m.in.npy --output out/m.out.npy
  python check_onnxruntime.py out

(a model with several inputs: `strata predict ... --input NAME=out/m.in.NAME.npy`).
Or let the Rust side write the whole set for the test models:

  STRATA_ONNX_DUMP=out cargo test -p strata-onnx --test tract_agreement dump -- --ignored --nocapture
"""

import argparse
import glob
import os
import sys

import numpy as np
import onnxruntime as ort


def dims(value_info):
    """Per-input shape with the symbolic batch axis replaced by 2."""
    return [d if isinstance(d, int) else 2 for d in value_info.shape]


def input_path(stem, name, n_inputs):
    single = f"{stem}.in.npy"
    if n_inputs == 1 and os.path.exists(single):
        return single
    return f"{stem}.in.{name}.npy"


def output_path(stem, name, index):
    return f"{stem}.out.npy" if index == 0 else f"{stem}.out.{name}.npy"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument(
        "--write-inputs",
        action="store_true",
        help="write a random batch of 2 (seed 0) for each model lacking one, then stop",
    )
    args = ap.parse_args()

    models = sorted(glob.glob(os.path.join(args.folder, "*.onnx")))
    if not models:
        sys.exit(f"no .onnx files in {args.folder}")
    worst_all = 0.0
    failed = False
    for path in models:
        stem = path[: -len(".onnx")]
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        ins = sess.get_inputs()
        if args.write_inputs:
            rng = np.random.default_rng(0)
            for vi in ins:
                p = input_path(stem, vi.name, len(ins))
                if len(ins) == 1:
                    p = f"{stem}.in.npy"
                if not os.path.exists(p):
                    x = rng.uniform(-1, 1, size=dims(vi)).astype(np.float32)
                    np.save(p, x)
                    print(f"wrote {p} {x.shape}")
            continue
        feed = {vi.name: np.load(input_path(stem, vi.name, len(ins))) for vi in ins}
        outs = sess.run(None, feed)
        name = os.path.basename(stem)
        for i, (vo, got) in enumerate(zip(sess.get_outputs(), outs)):
            ref_path = output_path(stem, vo.name, i)
            if not os.path.exists(ref_path):
                print(f"{name}: output {vo.name}: no {ref_path}, skipped")
                continue
            want = np.load(ref_path)
            if want.shape != got.shape:
                print(f"{name}: output {vo.name}: shape {got.shape} != strata's {want.shape}")
                failed = True
                continue
            diff = float(np.max(np.abs(got - want))) if want.size else 0.0
            scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-12)
            rel = diff / scale
            worst_all = max(worst_all, rel)
            flag = "" if rel <= args.tolerance else "  <-- over tolerance"
            failed |= rel > args.tolerance
            print(
                f"{name}: output {vo.name} {tuple(got.shape)}: max abs diff {diff:.3e}, "
                f"relative {rel:.3e}{flag}"
            )
    if not args.write_inputs:
        print(f"largest relative difference: {worst_all:.3e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
