#!/usr/bin/env python3
"""The strata-bench workloads in PyTorch (eager, channels_last for convolutions)
and, for ResNet-50 inference, onnxruntime. Prints a table and, with --json,
writes the results in strata-bench's format (same `key` strings) for
bench/compare.py. Run it from the venv that bench/setup.sh builds.

    python bench/torch_bench.py gemm conv-all resnet50-infer --json torch.json

`loader` and `resnet50-jpeg` read the folder of JPEGs that `strata-bench
make-jpegs` writes (under target/bench-jpegs; made with cargo if missing),
through torchvision's ImageFolder and a DataLoader.
"""
import argparse
import contextlib
import resource
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


def _rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


BASE_RSS_MB = _rss_mb()  # with torch imported: the runtime's own share
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# --- the workload lists, as in crates/strata-bench/src/{gemm_bench,conv_bench}.rs

GEMM_SHAPES = [
    ("square", 1024, 1024, 1024),
    ("square", 2048, 2048, 2048),
    ("r50.conv1 7x7/2", 8 * 112 * 112, 147, 64),
    ("r50.layer1 1x1", 8 * 56 * 56, 64, 64),
    ("r50.layer1 1x1", 8 * 56 * 56, 64, 256),
    ("r50.layer1 1x1", 8 * 56 * 56, 256, 64),
    ("r50.layer1 3x3", 8 * 56 * 56, 576, 64),
    ("r50.layer2 3x3", 8 * 28 * 28, 1152, 128),
    ("r50.layer2 1x1", 8 * 28 * 28, 128, 512),
    ("r50.layer2 1x1", 8 * 28 * 28, 512, 128),
    ("r50.layer3 3x3", 8 * 14 * 14, 2304, 256),
    ("r50.layer3 1x1", 8 * 14 * 14, 256, 1024),
    ("r50.layer3 1x1", 8 * 14 * 14, 1024, 256),
    ("r50.layer4 3x3", 8 * 7 * 7, 4608, 512),
    ("r50.layer4 1x1", 8 * 7 * 7, 512, 2048),
    ("r50.layer4 1x1", 8 * 7 * 7, 2048, 512),
]

CONV_BATCH = 8
# (label, hw, cin, cout, k, stride, count in ResNet-50, headline)
CONV_SHAPES = [
    ("conv1", 224, 3, 64, 7, 2, 1, True),
    ("layer1", 56, 64, 64, 1, 1, 1, False),
    ("layer1", 56, 64, 64, 3, 1, 3, True),
    ("layer1", 56, 64, 256, 1, 1, 4, True),
    ("layer1", 56, 256, 64, 1, 1, 2, False),
    ("layer2", 56, 256, 128, 1, 1, 1, False),
    ("layer2", 56, 128, 128, 3, 2, 1, False),
    ("layer2", 56, 256, 512, 1, 2, 1, False),
    ("layer2", 28, 128, 512, 1, 1, 4, False),
    ("layer2", 28, 512, 128, 1, 1, 3, False),
    ("layer2", 28, 128, 128, 3, 1, 3, False),
    ("layer3", 28, 512, 256, 1, 1, 1, False),
    ("layer3", 28, 256, 256, 3, 2, 1, False),
    ("layer3", 28, 512, 1024, 1, 2, 1, False),
    ("layer3", 14, 256, 1024, 1, 1, 6, False),
    ("layer3", 14, 1024, 256, 1, 1, 5, False),
    ("layer3", 14, 256, 256, 3, 1, 5, False),
    ("layer4", 14, 1024, 512, 1, 1, 1, False),
    ("layer4", 14, 512, 512, 3, 2, 1, False),
    ("layer4", 14, 1024, 2048, 1, 2, 1, False),
    ("layer4", 7, 512, 2048, 1, 1, 3, False),
    ("layer4", 7, 2048, 512, 1, 1, 2, False),
    ("layer4", 7, 512, 512, 3, 1, 2, False),
]

COMMANDS = ["gemm", "conv", "conv-all", "resnet50-infer", "resnet50-train",
            "resnet50-frozen", "mnist-epoch", "loader", "resnet50-jpeg", "peak"]
ALL = ["gemm", "conv-all", "resnet50-infer", "resnet50-train", "resnet50-frozen", "mnist-epoch"]


def time_runs(warmup, runs, fn, setup=None):
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    ts = []
    for _ in range(max(1, runs)):
        if setup:
            setup()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


class Results:
    def __init__(self):
        self.rows = []

    def add(self, engine, group, key, threads, times, throughput, unit, runs, flops=None):
        row = dict(engine=engine, group=group, key=key, threads=threads,
                   median_s=times[0], min_s=times[1], runs=runs,
                   throughput=throughput, unit=unit)
        if flops is not None:
            row["flops"] = flops
            row["gflops"] = throughput
        self.rows.append(row)
        print(f"{engine:<12} {key:<46} {threads:>2}t {times[0] * 1e3:>11.3f} ms "
              f"{throughput:>10.2f} {unit}", flush=True)

    def kernel(self, engine, group, key, threads, times, flops, runs):
        self.add(engine, group, key, threads, times, flops / times[0] / 1e9, "GFLOP/s", runs, flops)

    def model(self, engine, key, threads, times, images, runs, group="model"):
        self.add(engine, group, key, threads, times, images / times[0], "images/s", runs)
        # the process's peak resident memory so far, and its size before any workload
        self.rows[-1]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.rows[-1]["base_rss_mb"] = BASE_RSS_MB


# --- gemm

def bench_gemm(args, threads, res):
    g = torch.Generator().manual_seed(1)
    for label, m, k, n in GEMM_SHAPES:
        a = torch.randn(m, k, generator=g)
        b = torch.randn(k, n, generator=g)
        c = torch.empty(m, n)
        flops = 2.0 * m * k * n
        for t in threads:
            torch.set_num_threads(t)
            times = time_runs(args.warmup, args.runs, lambda: torch.mm(a, b, out=c))
            res.kernel("torch", "gemm", f"gemm {label} {m}x{k}x{n}", t, times, flops, args.runs)


# --- conv

def bench_conv(args, threads, res, all_shapes):
    g = torch.Generator().manual_seed(2)
    cl = torch.channels_last
    for t in threads:
        torch.set_num_threads(t)
        tot_fwd = tot_fb = tot_flops = 0.0
        for (label, hw, cin, cout, k, s, count, headline) in CONV_SHAPES:
            if not (all_shapes or headline):
                continue
            pad = k // 2
            o = (hw + 2 * pad - k) // s + 1
            flops = 2.0 * CONV_BATCH * o * o * cout * cin * k * k
            x = torch.randn(CONV_BATCH, cin, hw, hw, generator=g).contiguous(memory_format=cl)
            w = (0.05 * torch.randn(cout, cin, k, k, generator=g)).contiguous(memory_format=cl)
            b = 0.05 * torch.randn(cout, generator=g)
            key = f"conv {label} {hw}x{hw}x{cin}->{cout} k{k}s{s}"

            def fwd():
                with torch.no_grad():
                    F.conv2d(x, w, b, stride=s, padding=pad)

            tf = time_runs(args.warmup, args.runs, fwd)
            res.kernel("torch", "conv", key + " fwd", t, tf, flops, args.runs)
            xg, wg, bg = (v.detach().requires_grad_(True) for v in (x, w, b))

            def clear():
                xg.grad = wg.grad = bg.grad = None

            def fb():
                F.conv2d(xg, wg, bg, stride=s, padding=pad).sum().backward()

            tb = time_runs(args.warmup, args.runs, fb, clear)
            res.kernel("torch", "conv", key + " fwd+bwd", t, tb, 3 * flops, args.runs)
            tot_fwd += count * tf[0]
            tot_fb += count * tb[0]
            tot_flops += count * flops
        if all_shapes:
            for p, tt, mult in (("fwd", tot_fwd, 1), ("fwd+bwd", tot_fb, 3)):
                res.kernel("torch", "conv", f"conv resnet50 all 53 convs (sum) {p}", t,
                           (tt, tt), mult * tot_flops, args.runs)


# --- models, in plain torch.nn (torchvision's ResNet-50 v1.5: stride on the 3x3)

class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        sc = x if self.downsample is None else self.downsample(x)
        return F.relu(y + sc)


class ResNet50(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for stage, blocks in enumerate([3, 4, 6, 3]):
            planes = 64 << stage
            for i in range(blocks):
                layers.append(Bottleneck(cin, planes, 2 if stage > 0 and i == 0 else 1))
                cin = planes * 4
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(2048, classes)

    def features(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(self.layers(x), 1), 1)

    def forward(self, x):
        return self.fc(self.features(x))


class MnistCnn(nn.Module):
    """The Keras 'Simple MNIST convnet' (34,826 parameters)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(1600, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(self.drop(torch.flatten(x, 1)))


def autocast(args):
    """`--precision mixed_bfloat16`: torch.autocast("cpu", dtype=torch.bfloat16)
    around the forward (convolutions and Linear in bfloat16, weights kept in
    float32), else nothing."""
    if args.precision == "mixed_bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resnet50_key(args, key):
    """strata-bench's key: `resnet50-infer b8`, or `resnet50-infer b8 mixed_bfloat16`."""
    return f"{key} {args.precision}" if args.precision == "mixed_bfloat16" else key


def images(batch, g):
    return torch.randn(batch, 3, 224, 224, generator=g).contiguous(memory_format=torch.channels_last)


def bench_resnet50_infer(args, t, res, with_ort=True):
    torch.set_num_threads(t)
    torch.manual_seed(0)
    model = ResNet50().eval().to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(3)
    xs = {b: images(b, g) for b in (1, 8)}
    for b, x in xs.items():
        def fwd():
            with torch.inference_mode(), autocast(args):
                model(x)
        res.model("torch", resnet50_key(args, f"resnet50-infer b{b}"), t,
                  time_runs(args.warmup, args.runs, fwd), b, args.runs)
    if not with_ort or args.precision != "float32":
        return
    try:
        import onnxruntime as ort
    except ImportError as e:
        print(f"onnxruntime not available: {e}", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "resnet50.onnx")
        m32 = ResNet50().eval()
        m32.load_state_dict(model.state_dict())
        dummy = torch.randn(1, 3, 224, 224)
        kw = dict(input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                  opset_version=17)
        try:
            torch.onnx.export(m32, (dummy,), path, dynamo=False, **kw)
        except Exception as e:  # older or newer exporters
            print(f"torch.onnx.export(dynamo=False) failed ({e}); trying the dynamo exporter", file=sys.stderr)
            torch.onnx.export(m32, (dummy,), path, **kw)
        so = ort.SessionOptions()
        so.intra_op_num_threads = t
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for b, x in xs.items():
            xn = x.contiguous().numpy()
            times = time_runs(args.warmup, args.runs, lambda: sess.run(None, {"x": xn}))
            res.model("onnxruntime", f"resnet50-infer b{b}", t, times, b, args.runs)


def bench_resnet50_train(args, t, res):
    torch.set_num_threads(t)
    torch.manual_seed(0)
    model = ResNet50().train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(4)
    x, y = images(8, g), torch.randint(0, 1000, (8,), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(args):
            out = model(x)
        F.cross_entropy(out.float(), y).backward()
        opt.step()

    res.model("torch", resnet50_key(args, "resnet50-train b8"), t,
              time_runs(args.train_warmup, args.runs, step), 8, args.runs)


def bench_resnet50_frozen(args, t, res):
    torch.set_num_threads(t)
    torch.manual_seed(0)
    model = ResNet50(classes=3).to(memory_format=torch.channels_last)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("fc."))
    model.eval()  # frozen BatchNorm runs in inference mode, as in strata's freeze_backbone
    model.fc.train()
    opt = torch.optim.SGD(model.fc.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(5)
    x, y = images(16, g), torch.randint(0, 3, (16,), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(args):
            out = model(x)
        F.cross_entropy(out.float(), y).backward()
        opt.step()

    res.model("torch", resnet50_key(args, "resnet50-frozen b16"), t,
              time_runs(args.train_warmup, args.runs, step), 16, args.runs)


def load_mnist_train():
    d = os.path.join(REPO, "data", "mnist")
    try:
        with gzip.open(os.path.join(d, "train-images-idx3-ubyte.gz")) as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        with gzip.open(os.path.join(d, "train-labels-idx1-ubyte.gz")) as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)
        return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))
    except OSError as e:
        print(f"MNIST not found under {d} ({e}); timing random images", file=sys.stderr)
        g = torch.Generator().manual_seed(6)
        return torch.rand(60000, 1, 28, 28, generator=g), torch.randint(0, 10, (60000,), generator=g)


def bench_mnist_epoch(args, t, res):
    torch.set_num_threads(t)
    torch.manual_seed(0)
    x, y = load_mnist_train()
    n = x.shape[0]
    model = MnistCnn().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch(max_steps=None):
        perm = torch.randperm(n)
        for s, i in enumerate(range(0, n, 128)):
            if max_steps is not None and s >= max_steps:
                break
            idx = perm[i:i + 128]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()

    epoch(5)  # warm-up: a few steps, as strata-bench does
    res.model("torch", "mnist-cnn-epoch b128", t, time_runs(0, args.mnist_runs, epoch), n, args.mnist_runs)


# --- the JPEG folder: loader alone, and feeding the training step

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def jpeg_folder(args):
    """The folder strata-bench uses: <jpeg-dir>/n<count>-k<classes>, made by
    `strata-bench make-jpegs` if it is not there yet (same bytes as strata's)."""
    root = args.jpeg_dir or os.path.join(REPO, "target", "bench-jpegs")
    d = os.path.join(root, f"n{args.jpeg_count}-k{args.classes}")
    try:
        with open(os.path.join(d, ".strata-bench-jpegs")) as f:
            done = f"count={args.jpeg_count} classes={args.classes} " in f.read()
    except OSError:
        done = False
    if not done:
        cmd = ["cargo", "run", "--release", "-q", "-p", "strata-bench", "--", "make-jpegs", d,
               "--count", str(args.jpeg_count), "--classes", str(args.classes)]
        print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    return d


def jpeg_loader(args, batch_size, workers, drop_last):
    """torchvision's ImageNet training pipeline over the JPEG folder."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms as T
    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    ds = datasets.ImageFolder(jpeg_folder(args), transform=tf)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=drop_last)


def bench_loader(args, t, res):
    torch.set_num_threads(t)
    torch.manual_seed(0)
    dl = jpeg_loader(args, 32, t, False)
    count = [0]

    def epoch():
        n = 0
        for x, _ in dl:
            n += x.shape[0]
        count[0] = n

    times = time_runs(args.warmup, args.runs, epoch)
    res.model("torch", "loader-rrc224-b32", t, times, count[0], args.runs, group="loader")


def bench_resnet50_jpeg(args, t, res):
    """resnet50-train's step fed from the DataLoader (t workers, 2 batches
    prefetched each: 4 in flight, as strata's stream), then as many steps on
    one held batch with the workers stopped."""
    torch.set_num_threads(t)
    torch.manual_seed(0)
    model = ResNet50().train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dl = jpeg_loader(args, 8, t, True)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y).backward()
        opt.step()

    steps = max(1, args.jpeg_steps)
    waits, times = [], []
    it = iter(dl)
    for s in range(args.train_warmup + steps):
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(dl)
            x, y = next(it)
        t1 = time.perf_counter()
        step(x, y)
        t2 = time.perf_counter()
        if s >= args.train_warmup:
            waits.append(t1 - t0)
            times.append(t2 - t1)
    del it  # stops the workers
    plain = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(x, y)
        plain.append(time.perf_counter() - t0)
    iters = [w + s for w, s in zip(waits, times)]
    res.model("torch", "resnet50-jpeg b8", t, (statistics.median(iters), min(iters)), 8, steps)
    row = res.rows[-1]
    row["wait_fraction"] = sum(waits) / sum(times)
    row["max_wait_s"] = max(waits)
    row["step_s"] = statistics.median(times)
    row["plain_step_s"] = statistics.median(plain)
    print(f"#   waited {100 * row['wait_fraction']:.2f}% of the step time (longest wait "
          f"{1e3 * row['max_wait_s']:.1f} ms); step {1e3 * row['step_s']:.1f} ms fed from JPEGs, "
          f"{1e3 * row['plain_step_s']:.1f} ms on a held batch with the workers stopped "
          f"(medians of {steps})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("commands", nargs="+", choices=COMMANDS + ["all"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--train-warmup", type=int, default=6,
                    help="untimed steps before the timed ones of resnet50-train, resnet50-frozen and "
                         "resnet50-jpeg")
    ap.add_argument("--mnist-runs", type=int, default=3)
    ap.add_argument("--threads", default=None, help="comma-separated thread counts")
    ap.add_argument("--jpeg-dir", default=None,
                    help="where generated JPEG folders are kept (default: target/bench-jpegs)")
    ap.add_argument("--jpeg-count", "--count", type=int, default=2000,
                    help="JPEGs in the folder of loader and resnet50-jpeg")
    ap.add_argument("--classes", type=int, default=10, help="class sub-folders of that folder")
    ap.add_argument("--jpeg-steps", type=int, default=10,
                    help="timed steps of resnet50-jpeg, and as many on a held batch")
    ap.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime rows")
    ap.add_argument("--precision", choices=["float32", "mixed_bfloat16"], default="float32",
                    help="the ResNet-50 rows under torch.autocast('cpu', dtype=torch.bfloat16) "
                         "(mixed_bfloat16; keys end in ' mixed_bfloat16', no onnxruntime rows)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    cmds = []
    for c in args.commands:
        for c2 in (ALL if c == "all" else [c]):
            if c2 not in cmds:
                cmds.append(c2)
    if "conv-all" in cmds and "conv" in cmds:
        cmds.remove("conv")
    given = [int(s) for s in args.threads.split(",")] if args.threads else None
    torch.set_num_interop_threads(1)
    print(f"# torch {torch.__version__} on {platform.processor() or platform.machine()}, "
          f"mkldnn={torch.backends.mkldnn.is_available()}", flush=True)
    res = Results()
    failures = []
    for c in cmds:
        threads = given or ([1, 2] if c == "gemm" else [2])
        try:
            if c == "gemm":
                bench_gemm(args, threads, res)
            elif c in ("conv", "conv-all"):
                bench_conv(args, threads, res, c == "conv-all")
            elif c == "peak":
                pass
            else:
                fn = {"resnet50-infer": lambda a, t, r: bench_resnet50_infer(a, t, r, not args.no_onnx),
                      "resnet50-train": bench_resnet50_train,
                      "resnet50-frozen": bench_resnet50_frozen,
                      "mnist-epoch": bench_mnist_epoch,
                      "loader": bench_loader,
                      "resnet50-jpeg": bench_resnet50_jpeg}[c]
                for t in threads:
                    fn(args, t, res)
        except Exception as e:  # report and go on with the other rows
            import traceback
            traceback.print_exc()
            failures.append(f"{c}: {e}")
    if args.json:
        versions = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}
        try:
            import torchvision
            import PIL
            versions["torchvision"] = torchvision.__version__
            versions["pillow"] = PIL.__version__
        except ImportError:
            pass
        try:
            import onnxruntime
            versions["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            pass
        with open(args.json, "w") as f:
            json.dump({"engine": "torch", "versions": versions, "runs": args.runs,
                       "warmup": args.warmup, "train_warmup": args.train_warmup,
                       "precision": args.precision,
                       "jpeg_count": args.jpeg_count, "jpeg_steps": args.jpeg_steps,
                       "failures": failures, "results": res.rows}, f, indent=1)
        print(f"# wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
