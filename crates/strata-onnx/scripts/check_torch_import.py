#!/usr/bin/env python3
"""Import torchvision models exported by torch.onnx.export into strata and
compare strata's predictions with onnxruntime's on the same input.

Run on demand (no test calls it). Needs:
  pip install torch torchvision onnx onnxruntime numpy

For each model (resnet18, mobilenet_v2 by default), with seeded random weights
and random BatchNorm statistics (so that BatchNorm is not the identity):

  1. torch.onnx.export (TorchScript exporter, opset 17, dynamic batch), once
     with constant folding (BatchNorm folded into the convolutions, as a
     deployed model is) and once without (BatchNormalization nodes kept);
  2. strata import MODEL.onnx --output MODEL.safetensors;
  3. onnxruntime runs the ONNX file on a random NCHW batch of 2; strata
     predict runs the imported model on the same batch in NHWC;
  4. prints the largest difference relative to the largest |logit| and
     exits 1 if any is over --tolerance (default 1e-4).

  python crates/strata-onnx/scripts/check_torch_import.py [--strata target/release/strata] [--out DIR]
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
import torch
import torchvision


def strata_binary(given):
    if given:
        return given
    for p in ("target/release/strata", "target/debug/strata"):
        if os.path.exists(p):
            return p
    sys.exit("no strata binary: cargo build --release -p strata-cli, or pass --strata")


def randomized(name, seed):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strata", default=None)
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    ap.add_argument("--out", default=None, help="keep the files in this folder")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    strata = strata_binary(args.strata)
    out = args.out or tempfile.mkdtemp(prefix="strata-torch-import-")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
    np.save(os.path.join(out, "x_nhwc.npy"), np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    worst, failed = 0.0, False
    for name in args.models.split(","):
        model = randomized(name, 0)
        for folded in (True, False):
            stem = os.path.join(out, f"{name}{'' if folded else '_bn'}")
            torch.onnx.export(
                model,
                (torch.from_numpy(x),),
                f"{stem}.onnx",
                opset_version=17,
                dynamo=False,
                do_constant_folding=folded,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
            subprocess.run([strata, "import", f"{stem}.onnx", "--output", f"{stem}.safetensors"], check=True)
            subprocess.run(
                [strata, "predict", f"{stem}.safetensors", "--input", os.path.join(out, "x_nhwc.npy"),
                 "--output", f"{stem}.out.npy"],
                check=True,
            )
            sess = ort.InferenceSession(f"{stem}.onnx", providers=["CPUExecutionProvider"])
            want = sess.run(None, {"input": x})[0]
            got = np.load(f"{stem}.out.npy")
            with torch.no_grad():
                torch_out = model(torch.from_numpy(x)).numpy()
            scale = float(np.max(np.abs(want)))
            rel = float(np.max(np.abs(got - want))) / scale
            rel_torch = float(np.max(np.abs(torch_out - want))) / scale
            worst = max(worst, rel)
            flag = "" if rel <= args.tolerance else "  <-- over tolerance"
            failed |= rel > args.tolerance or got.shape != want.shape
            kind = "BatchNorm folded" if folded else "BatchNorm nodes"
            print(f"{name} ({kind}): strata vs onnxruntime relative {rel:.2e} "
                  f"(torch vs onnxruntime {rel_torch:.2e}), top-1 agree "
                  f"{np.mean(got.argmax(1) == want.argmax(1)):.0%}{flag}")
    print(f"largest relative difference: {worst:.2e} (files in {out})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
