#!/usr/bin/env python3
"""strata's mixed_bfloat16 against torch.autocast bfloat16 on the same seeded
ResNet-50: the logits of both, and of both in float32, on the same input.

Run on demand (no test calls it), from the venv of bench/setup.sh:

    ~/.cache/strata-bench-venv/bin/python bench/check_bf16_torch.py [--strata target/release/strata]

1. torchvision's resnet50 (weights=None, seed 0) with random BatchNorm
   statistics and affine parameters (so BatchNorm is not the identity), saved
   as a torchvision-named safetensors file (strata loads those);
2. a spec of the same network with a linear head, so that `strata predict`
   writes logits (the zoo's resnet50 ends in a softmax): the zoo's layer
   names, torchvision's explicit paddings, BatchNorm epsilon 1e-5;
3. a seeded batch of 2 (NHWC .npy for strata, NCHW channels_last for torch);
4. torch: float32, and torch.autocast("cpu", dtype=torch.bfloat16); strata:
   `predict --precision float32` and `--precision mixed_bfloat16`;
5. prints each pair's largest |difference| over the largest |logit| of the
   float32 torch logits and exits 1 if strata bf16 vs torch bf16 or strata
   bf16 vs float32 is over --tolerance (default 2e-2).
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision


def strata_binary(given):
    if given:
        return given
    for p in ("target/release/strata", "target/debug/strata"):
        if os.path.exists(p):
            return p
    sys.exit("no strata binary: cargo build --release -p strata-cli, or pass --strata")


def randomized_resnet50(seed):
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def write_safetensors(path, tensors):
    """A float32 safetensors file (the format is a JSON header and raw bytes)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def resnet50_spec():
    """The zoo's resnet50 (crates/strata-zoo/src/resnet.rs) with a linear fc."""
    layers = []

    def add(name, inputs, **kw):
        layers.append({"name": name, "inputs": inputs, **kw})
        return name

    def conv(name, x, filters, k, stride, pad):
        padding = [[pad, pad], [pad, pad]] if pad else "valid"
        return add(name, [x], type="Conv2D", filters=filters, kernel_size=k, strides=stride,
                   padding=padding, use_bias=False)

    def bn(name, x):
        return add(name, [x], type="BatchNormalization", epsilon=1e-5, momentum=0.9)

    def relu(name, x):
        return add(name, [x], type="Activation", activation="relu")

    x = relu("relu", bn("bn1", conv("conv1", "input_layer", 64, 7, 2, 3)))
    x = add("maxpool", [x], type="MaxPooling2D", pool_size=3, strides=2, padding=[[1, 1], [1, 1]])
    cin = 64
    for stage, blocks in enumerate([3, 4, 6, 3]):
        planes = 64 << stage
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            p = f"layer{stage + 1}.{b}."
            y = relu(p + "relu1", bn(p + "bn1", conv(p + "conv1", x, planes, 1, 1, 0)))
            y = relu(p + "relu2", bn(p + "bn2", conv(p + "conv2", y, planes, 3, stride, 1)))
            y = bn(p + "bn3", conv(p + "conv3", y, planes * 4, 1, 1, 0))
            s = x
            if stride != 1 or cin != planes * 4:
                s = bn(p + "downsample.1", conv(p + "downsample.0", x, planes * 4, 1, stride, 0))
            x = relu(p + "relu", add(p + "add", [y, s], type="Add"))
            cin = planes * 4
    x = add("avgpool", [x], type="GlobalAveragePooling2D")
    x = add("fc", [x], type="Dense", units=1000)
    return {"name": "resnet50_logits", "inputs": {"input_layer": [224, 224, 3]}, "layers": layers,
            "outputs": [x]}


def rel(a, b, scale):
    return float(np.abs(a - b).max() / scale)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strata", default=None)
    ap.add_argument("--out", default=None, help="keep the files in this folder")
    ap.add_argument("--tolerance", type=float, default=2e-2)
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()
    strata = strata_binary(args.strata)
    out = args.out or tempfile.mkdtemp(prefix="strata-bf16-torch-")
    os.makedirs(out, exist_ok=True)
    model = randomized_resnet50(0)
    weights = os.path.join(out, "resnet50_torchvision.safetensors")
    write_safetensors(weights, model.state_dict())
    spec = os.path.join(out, "resnet50_logits.json")
    with open(spec, "w") as f:
        json.dump(resnet50_spec(), f)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
    x_nhwc = os.path.join(out, "x_nhwc.npy")
    np.save(x_nhwc, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        t32 = model(xt).float().numpy()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tbf = model(xt).float().numpy()
    logits = {"torch float32": t32, "torch autocast bf16": tbf}
    for p in ("float32", "mixed_bfloat16"):
        y = os.path.join(out, f"strata_{p}.npy")
        cmd = [strata, "predict", spec, "--weights", weights, "--input", x_nhwc, "--output", y,
               "--precision", p]
        print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
        logits[f"strata {p}"] = np.load(y)
    scale = float(np.abs(t32).max())
    print(f"ResNet-50 (torchvision init, random BatchNorm statistics), batch {args.batch}, "
          f"torch {torch.__version__}; largest |logit| {scale:.4f}")
    pairs = [
        ("strata float32", "torch float32", None),
        ("strata mixed_bfloat16", "torch autocast bf16", args.tolerance),
        ("strata mixed_bfloat16", "strata float32", args.tolerance),
        ("torch autocast bf16", "torch float32", None),
        ("strata mixed_bfloat16", "torch float32", None),
    ]
    failed = False
    for a, b, tol in pairs:
        r = rel(logits[a], logits[b], scale)
        bad = tol is not None and r > tol
        failed |= bad
        print(f"  {a} vs {b}: {r:.2e}{'  OVER ' + str(tol) if bad else ''}")
    same_top = (logits["strata mixed_bfloat16"].argmax(1) == logits["torch autocast bf16"].argmax(1)).mean()
    print(f"  top-1 agreement strata bf16 / torch bf16: {same_top:.0%}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
