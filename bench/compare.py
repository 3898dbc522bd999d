#!/usr/bin/env python3
"""Runs strata-bench and bench/torch_bench.py on the same workloads in one
invocation and prints them side by side with the throughput ratio
strata/peer (> 1: strata is faster).

Each command runs strata then PyTorch back to back, so the two columns of a
row share the machine's load of that moment (the CPUs may be shared).

    bench/compare.py                        # gemm conv-all and every model row
    bench/compare.py gemm conv --runs 5 --markdown /tmp/table.md --json /tmp/all.json
    bench/compare.py resnet50-infer resnet50-train --precision float32,mixed_bfloat16

`--precision` lists the policies the ResNet-50 rows run under: strata's
`mixed_bfloat16` beside PyTorch's torch.autocast("cpu", dtype=torch.bfloat16)
(channels_last), their keys ending in " mixed_bfloat16"; the other rows run
once, in float32.

Python: the venv of bench/setup.sh (STRATA_BENCH_VENV, default
~/.cache/strata-bench-venv) runs torch_bench.py; this script itself needs
only the standard library.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ALL = ["gemm", "conv-all", "resnet50-infer", "resnet50-train", "resnet50-frozen", "mnist-epoch"]
# known to both engines; the JPEG rows are asked for by name (not in `all`)
KNOWN = ["gemm", "conv", "conv-all", "resnet50-infer", "resnet50-train", "resnet50-frozen",
         "mnist-epoch", "loader", "resnet50-jpeg", "peak"]
# the rows that take --precision in both engines
PRECISION_ROWS = ["resnet50-infer", "resnet50-train", "resnet50-frozen"]
PRECISIONS = ["float32", "mixed_bfloat16"]


def venv_python():
    venv = os.environ.get("STRATA_BENCH_VENV", os.path.expanduser("~/.cache/strata-bench-venv"))
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        sys.exit(f"no venv at {venv}: run bench/setup.sh first")
    return py


def run(cmd):
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, cwd=REPO)
    if p.returncode != 0:
        print(f"(exit status {p.returncode}; keeping the rows it wrote)", file=sys.stderr)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"results": []}


def lscpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def merge_rounds(rows):
    """One row per (engine, key, threads): the median over rounds of the
    per-round median times, with `round_medians_s` listing them all."""
    groups = {}
    for r in rows:
        groups.setdefault((r.get("engine", "strata"), r["key"], r["threads"]), []).append(r)
    out = []
    for rs in groups.values():
        med = statistics.median(r["median_s"] for r in rs)
        row = dict(rs[0])
        row["throughput"] = rs[0]["throughput"] * rs[0]["median_s"] / med
        if "gflops" in row:
            row["gflops"] = row["throughput"]
        if row.get("pct_peak") is not None:
            row["pct_peak"] = rs[0]["pct_peak"] * rs[0]["median_s"] / med
        row["median_s"] = med
        row["round_medians_s"] = [r["median_s"] for r in rs]
        # rows fed by a loader: medians over rounds too, and the longest wait of all
        for k in ("wait_fraction", "step_s", "plain_step_s"):
            vals = [r[k] for r in rs if r.get(k) is not None]
            if vals:
                row[k] = statistics.median(vals)
        waits = [r["max_wait_s"] for r in rs if r.get("max_wait_s") is not None]
        if waits:
            row["max_wait_s"] = max(waits)
        out.append(row)
    return out


def fmt(v, nd=1):
    return "-" if v is None else f"{v:.{nd}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("commands", nargs="*", default=["all"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mnist-runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed runs before each row's timed ones, in both engines (the training "
                         "rows take --train-warmup instead)")
    ap.add_argument("--train-warmup", type=int, default=6,
                    help="untimed steps before the timed ones of resnet50-train, resnet50-frozen and "
                         "resnet50-jpeg, in "
                         "both engines: torch's second to fourth steps can be 10-30%% slower than its "
                         "later ones, which flattered strata's ratio with a single warm-up")
    ap.add_argument("--threads", default=None, help="comma-separated thread counts for every row")
    ap.add_argument("--jpeg-count", type=int, default=2000,
                    help="JPEGs in the generated folder of loader and resnet50-jpeg")
    ap.add_argument("--classes", type=int, default=10, help="class sub-folders of that folder")
    ap.add_argument("--jpeg-dir", default=None,
                    help="where generated JPEG folders are kept (default: target/bench-jpegs)")
    ap.add_argument("--jpeg-steps", type=int, default=10,
                    help="timed steps of resnet50-jpeg in both engines, and as many on a held batch")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the strata/torch alternation this many times and report, per row, "
                         "the median of the rounds' medians (evens out bursts of load on a shared machine)")
    ap.add_argument("--precision", default="float32",
                    help="comma-separated policies for the ResNet-50 rows: float32, mixed_bfloat16 "
                         "(strata's policy beside torch.autocast bfloat16)")
    ap.add_argument("--json", default=None, help="write both engines' results here")
    ap.add_argument("--markdown", default=None, help="write the side-by-side table as Markdown here")
    args = ap.parse_args()
    cmds = []
    for c in args.commands:
        for c2 in (ALL if c == "all" else [c]):
            if c2 not in KNOWN:
                ap.error(f"unknown command '{c2}' (known: all, {', '.join(KNOWN)})")
            if c2 not in cmds:
                cmds.append(c2)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    for p in precisions:
        if p not in PRECISIONS:
            ap.error(f"--precision {p}: expected float32 or mixed_bfloat16")
    runs = [(c, p) for p in precisions for c in cmds if p == "float32" or c in PRECISION_ROWS]
    if not runs:
        ap.error("--precision mixed_bfloat16 applies to " + ", ".join(PRECISION_ROWS))
    py = venv_python()
    common = ["--runs", str(args.runs), "--warmup", str(args.warmup),
              "--train-warmup", str(args.train_warmup), "--mnist-runs", str(args.mnist_runs)]
    if args.threads:
        common += ["--threads", args.threads]
    if any(c in ("loader", "resnet50-jpeg") for c in cmds):
        common += ["--jpeg-count", str(args.jpeg_count), "--classes", str(args.classes),
                   "--jpeg-steps", str(args.jpeg_steps)]
        if args.jpeg_dir:
            common += ["--jpeg-dir", os.path.abspath(args.jpeg_dir)]
    run(["cargo", "build", "--release", "-q", "-p", "strata-bench"])
    strata, torch = {"results": []}, {"results": []}
    rounds = max(1, args.rounds)
    with tempfile.TemporaryDirectory() as d:
        for rnd in range(rounds):
            for c, p in runs:
                sj = os.path.join(d, f"s-{c}-{p}-{rnd}.json")
                tj = os.path.join(d, f"t-{c}-{p}-{rnd}.json")
                prec = ["--precision", p] if p != "float32" else []
                run(["cargo", "run", "--release", "-q", "-p", "strata-bench", "--", c, *common, *prec,
                     "--json", sj])
                run([py, os.path.join(HERE, "torch_bench.py"), c, *common, *prec, "--json", tj])
                s, t = load(sj), load(tj)
                strata["results"] += s.get("results", [])
                torch["results"] += t.get("results", [])
                for k in ("cpu", "cores", "peak_gflops", "peak_source", "peak_measured_1t", "bf16_kernel"):
                    if k in s:
                        strata[k] = s[k]
                if "versions" in t:
                    torch["versions"] = t["versions"]
    strata["results"] = merge_rounds(strata["results"])
    torch["results"] = merge_rounds(torch["results"])
    peaks = {int(k): v for k, v in strata.get("peak_gflops", {}).items()}
    peer = {}
    for r in torch["results"]:
        peer[(r.get("engine", "torch"), r["key"], r["threads"])] = r
    rows = []
    for r in strata["results"]:
        k = (r["key"], r["threads"])
        # strata's packed-kernel GEMM rows face PyTorch's plain GEMM rows
        pk = (r["key"].replace("gemm-packed ", "gemm ", 1), r["threads"])
        tr = peer.get(("torch",) + pk)
        orr = peer.get(("onnxruntime",) + k)
        peak = peaks.get(r["threads"])
        pct = lambda x: (100 * x["throughput"] / peak) if (x and peak and x.get("unit") == "GFLOP/s") else None
        rows.append(dict(
            key=r["key"], threads=r["threads"], unit=r["unit"],
            strata=r["throughput"], strata_pct=pct(r),
            torch=tr and tr["throughput"], torch_pct=pct(tr),
            ratio_torch=(r["throughput"] / tr["throughput"]) if tr else None,
            ort=orr and orr["throughput"],
            ratio_ort=(r["throughput"] / orr["throughput"]) if orr else None,
        ))
    head = ["workload", "thr", "unit", "strata", "% peak", "torch", "% peak", "strata/torch", "onnxrt", "strata/onnxrt"]
    table = [[x["key"], str(x["threads"]), x["unit"], fmt(x["strata"]), fmt(x["strata_pct"]),
              fmt(x["torch"]), fmt(x["torch_pct"]), fmt(x["ratio_torch"], 2), fmt(x["ort"]),
              fmt(x["ratio_ort"], 2)] for x in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(head)]
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    peak_line = ", ".join(f"{v:.1f} GFLOP/s on {k} thread(s)" for k, v in sorted(peaks.items()))
    header = [f"date: {now}",
              f"machine: {lscpu_model()}, {os.cpu_count()} cores",
              f"peak for % of peak: {peak_line} ({strata.get('peak_source', '?')}); "
              f"best 1-thread FMA loop measured in this run: {fmt(strata.get('peak_measured_1t'))} GFLOP/s",
              f"peer versions: {json.dumps(torch.get('versions', {}))}",
              f"precision of the ResNet-50 rows: {', '.join(precisions)}"
              + (f" (strata's bfloat16 kernel: {strata.get('bf16_kernel', '?')}; torch: "
                 "torch.autocast('cpu', dtype=torch.bfloat16), channels_last)"
                 if "mixed_bfloat16" in precisions else ""),
              f"median of {args.runs} runs per row after {args.warmup} warm-up "
              f"({args.train_warmup} for the training steps; MNIST: {args.mnist_runs} epochs), "
              f"median over {rounds} round(s) of strata-then-torch; throughput: higher is better; "
              "ratio > 1: strata faster"]
    print()
    for h in header:
        print("# " + h)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for t in table:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(t, widths))))
    if args.markdown:
        with open(args.markdown, "w") as f:
            for h in header:
                f.write(f"- {h}\n")
            f.write("\n| " + " | ".join(head) + " |\n|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|\n")
            for t in table:
                f.write("| " + " | ".join(t) + " |\n")
    # peak resident memory of the process that ran each model row (each command
    # runs in its own process); base = before the workload (torch: with torch imported)
    mem = []
    for r in strata["results"]:
        tr = peer.get(("torch", r["key"], r["threads"]))
        if r.get("peak_rss_mb") and tr and tr.get("peak_rss_mb"):
            mem.append([r["key"], fmt(r["peak_rss_mb"]), fmt(r.get("base_rss_mb")),
                        fmt(tr["peak_rss_mb"]), fmt(tr.get("base_rss_mb")),
                        fmt(r["peak_rss_mb"] / tr["peak_rss_mb"], 2)])
    mem_head = ["workload", "strata peak MB", "strata base MB", "torch peak MB", "torch base MB",
                "strata/torch peak"]
    if mem:
        print()
        print("# peak resident memory of each row's process (lower is better)")
        for t in [mem_head] + mem:
            print("  ".join(t))
    if args.markdown and mem:
        with open(args.markdown, "a") as f:
            f.write("\n| " + " | ".join(mem_head) + " |\n|---|" + "---:|" * (len(mem_head) - 1) + "\n")
            for t in mem:
                f.write("| " + " | ".join(t) + " |\n")
    # training fed by a loader: time blocked waiting for the next batch over
    # the time in the steps, and the step with and without the loader running
    def ms(x, k):
        return fmt(1e3 * x[k] if x and x.get(k) is not None else None)

    def pc(x):
        return fmt(100 * x["wait_fraction"] if x and x.get("wait_fraction") is not None else None, 2)

    feed = []
    for r in strata["results"]:
        tr = peer.get(("torch", r["key"], r["threads"]))
        if r.get("wait_fraction") is not None:
            feed.append([r["key"], str(r["threads"]), ms(r, "step_s"), ms(r, "plain_step_s"), pc(r),
                         ms(r, "max_wait_s"), ms(tr, "step_s"), ms(tr, "plain_step_s"), pc(tr),
                         ms(tr, "max_wait_s")])
    feed_head = ["workload", "thr", "strata step ms", "held batch ms", "wait %", "max wait ms",
                 "torch step ms", "held batch ms", "wait %", "max wait ms"]
    if feed:
        print()
        print("# steps fed from JPEGs: median step, the same step on a held batch with the loader "
              "stopped, and time waiting for batches as % of the step time")
        for t in [feed_head] + feed:
            print("  ".join(t))
    if args.markdown and feed:
        with open(args.markdown, "a") as f:
            f.write("\n| " + " | ".join(feed_head) + " |\n|---|" + "---:|" * (len(feed_head) - 1) + "\n")
            for t in feed:
                f.write("| " + " | ".join(t) + " |\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": now, "strata": strata, "peer": torch, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
