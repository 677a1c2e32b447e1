#!/usr/bin/env python3
"""Runs the workloads of smallgrad's benches with PyTorch (and numpy for GEMM) on this machine,
runs smallgrad's benches in the same session, and prints the tables side by side with ratios.

Never run in CI. Setup (once):
    python3 -m venv /work/venv && /work/venv/bin/pip install torch numpy threadpoolctl
Run from the repository root:
    /work/venv/bin/python scripts/compare_pytorch.py            # everything
    /work/venv/bin/python scripts/compare_pytorch.py --quick    # GEMM up to n = 512 only
    /work/venv/bin/python scripts/compare_pytorch.py --only step  # gemm | conv | step
    /work/venv/bin/python scripts/compare_pytorch.py --runs 3     # three back-to-back runs + medians
    /work/venv/bin/python scripts/compare_pytorch.py --runs 3 --rounds 3  # each run alternating 3 times

Workloads (identical on both sides): GEMM n x n x n, f32 and f64, n = 128..2048, 1 and 2
threads; conv2d forward/backward for each distinct ResNet-20 layer shape (28x28x1, batch 64);
ResNet-20 for 28x28x1 (conv3x3 1->16 + BN + ReLU, three stages of three BasicBlocks with
16/32/64 channels, stages 2 and 3 starting with stride 2 and a 1x1 conv + BN projection
shortcut, global average pool, Linear 64->10), the seed's cosine loss (xent weight 0.1), SGD
momentum 0.9, weight decay 5e-4, f32, random-normal inputs, 2 threads, median of 30 steps after
5 warm-up steps; inference at batch 256 in eval mode under no_grad. PyTorch runs each conv,
step and inference in both memory layouts, NCHW (contiguous) and channels_last, and ratios are
taken against the faster of the two; inference is also tried under torch.compile (reported, not
a ratio target; the script says so when it is unavailable). With --runs N the whole comparison
runs N times back to back (ratios always within one run), each run's table is printed, and a
last table gives each ratio's per-run values and median. With --rounds R each comparison of a
run alternates smallgrad and PyTorch R times and the run's ratio is the median of the R
per-round ratios: on a host whose speed drifts over minutes (a shared VM), the two sides of one
round run seconds apart, and a slow phase spoils one round, not the run. Peak RSS is read from
/proc/self/status (VmHWM, reset through /proc/self/clear_refs before each workload) in each
process; PyTorch's includes its ~300 MB of libraries, so the step's own memory is also shown as
peak minus the RSS just before the workload.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

# These two slow OpenBLAS down on this CPU (numpy's GEMM); unset before numpy is imported.
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

CONV_LAYERS = [  # (name, cin, cout, kernel, stride, padding, side) as benches/conv.rs
    ("stem 3x3 1->16 @28", 1, 16, 3, 1, 1, 28),
    ("stage1 3x3 16->16 @28", 16, 16, 3, 1, 1, 28),
    ("stage2 3x3 16->32 s2 @28", 16, 32, 3, 2, 1, 28),
    ("stage2 1x1 16->32 s2 @28", 16, 32, 1, 2, 0, 28),
    ("stage2 3x3 32->32 @14", 32, 32, 3, 1, 1, 14),
    ("stage3 3x3 32->64 s2 @14", 32, 64, 3, 2, 1, 14),
    ("stage3 1x1 32->64 s2 @14", 32, 64, 1, 2, 0, 14),
    ("stage3 3x3 64->64 @7", 64, 64, 3, 1, 1, 7),
]


def median_secs(warmup, reps, f):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def status_mib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def set_threads(n):
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits  # optional

        threadpool_limits(n)
    except ImportError:
        pass


# ---------------------------------------------------------------- smallgrad side
def run_smallgrad(bench, extra_env=None):
    """Runs `cargo bench --bench <bench>`, returns its recorded {key: value}, prints its table."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt", delete=False) as out:
        path = out.name
    env = dict(os.environ, SMALLGRAD_BENCH_OUT=path, SMALLGRAD_BENCH_THREADS=str(THREADS))
    env.update(extra_env or {})
    proc = subprocess.run(["cargo", "bench", "--bench", bench], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"cargo bench --bench {bench} failed:\n{proc.stderr[-3000:]}")
    vals = {}
    with open(path) as fh:
        for line in fh:
            k, v = line.split()
            vals[k] = float(v)
    os.unlink(path)
    return vals


# ---------------------------------------------------------------- GEMM
def gemm_numpy(n, dtype, threads):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    reps = 30 if n <= 256 else (7 if n <= 1024 else 3)
    if threadpool_limits is not None:
        with threadpool_limits(threads):
            s = median_secs(1, reps, lambda: a @ b)
    else:
        s = float("nan")
    return 2 * n**3 / s / 1e9


def gemm_torch(n, dtype, threads):
    set_threads(threads)
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    reps = 30 if n <= 256 else (7 if n <= 1024 else 3)
    s = median_secs(1, reps, lambda: a @ b)
    set_threads(THREADS)
    return 2 * n**3 / s / 1e9


def compare_gemm(quick):
    """Prints the GEMM table; returns {row name: smallgrad / numpy} (higher is better)."""
    sizes = [128, 256, 512] if quick else [128, 256, 512, 1024, 2048]
    ours = run_smallgrad("gemm", {"SMALLGRAD_BENCH_QUICK": "1"} if quick else None)
    peak = {(d, t): ours[f"peak_{d}_t{t}"] for d in ("f32", "f64") for t in (1, 2)}
    print(f"FMA peak (measured by benches/gemm.rs): 1 thread {peak['f32', 1]:.1f} GFLOP/s f32 "
          f"({peak['f64', 1]:.1f} f64), 2 threads {peak['f32', 2]:.1f} f32 ({peak['f64', 2]:.1f} f64)")
    print()
    print("| dtype | n | threads | smallgrad GFLOP/s | % of peak | numpy (OpenBLAS) | % of peak | torch "
          "| smallgrad / numpy | smallgrad / torch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios = {}
    for name, npd, td in (("f32", np.float32, torch.float32), ("f64", np.float64, torch.float64)):
        for n in sizes:
            for t in (1, 2):
                g = ours[f"gemm_{name}_n{n}_t{t}"]
                gn = gemm_numpy(n, npd, t)
                gt = gemm_torch(n, td, t)
                pk = peak[name, t]
                print(f"| {name} | {n} | {t} | {g:.1f} | {100 * g / pk:.0f}% | {gn:.1f} | {100 * gn / pk:.0f}% "
                      f"| {gt:.1f} | {g / gn:.2f}x | {g / gt:.2f}x |")
                ratios[f"GEMM {name} n={n} {t}T: smallgrad / numpy"] = g / gn
    return ratios


# ---------------------------------------------------------------- conv
LAYOUTS = (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last))


def torch_conv_ms(c, o, k, s, p, hw, fmt):
    """(forward ms, backward ms) of one conv layer in PyTorch, in memory format `fmt`."""
    x = torch.randn(64, c, hw, hw).to(memory_format=fmt).requires_grad_()
    w = torch.randn(o, c, k, k).to(memory_format=fmt).requires_grad_()
    with torch.no_grad():
        fwd = median_secs(3, 30, lambda: F.conv2d(x, w, None, s, p))
    g = torch.randn_like(F.conv2d(x, w, None, s, p))

    def both():
        x.grad = None
        w.grad = None
        F.conv2d(x, w, None, s, p).backward(g)

    bwd = max(median_secs(3, 30, both) - fwd, 0.0)
    return fwd * 1e3, bwd * 1e3


def compare_conv():
    """Prints the per-layer table; returns {row name: smallgrad / best torch} (lower is better)."""
    ours = run_smallgrad("conv")
    set_threads(THREADS)
    print("| layer | smallgrad fwd ms | torch NCHW | torch channels_last | ratio to best "
          "| smallgrad bwd ms | torch NCHW | torch channels_last | ratio to best |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios = {}
    for i, (name, c, o, k, s, p, hw) in enumerate(CONV_LAYERS):
        (f0, b0), (f1, b1) = (torch_conv_ms(c, o, k, s, p, hw, fmt) for _, fmt in LAYOUTS)
        of, ob = ours[f"conv{i}_fwd_ms"], ours[f"conv{i}_bwd_ms"]
        rf, rb = of / min(f0, f1), ob / min(b0, b1)
        print(f"| {name} | {of:.3f} | {f0:.3f} | {f1:.3f} | {rf:.2f}x "
              f"| {ob:.3f} | {b0:.3f} | {b1:.3f} | {rb:.2f}x |")
        ratios[f"conv {name} fwd"] = rf
        ratios[f"conv {name} bwd"] = rb
    return ratios


# ---------------------------------------------------------------- ResNet-20 step
class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = None
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for b in range(3):
                blocks.append(BasicBlock(cin, planes, stride if b == 0 else 1))
                cin = planes
            layers.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def cosine_loss(logits, targets, xent=0.1):
    """The seed's module (docs: ../shared/seed-cosine-loss.md)."""
    one_hot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
    cos = F.cosine_similarity(logits, one_hot, dim=1).mean()
    loss = 1 - cos
    if xent > 0:
        loss = loss + xent * F.cross_entropy(F.normalize(logits, dim=1), targets)
    return loss


def torch_step(fmt):
    """(training step s, its peak RSS MiB, its growth MiB, inference s, peak, growth) in `fmt`."""
    torch.manual_seed(0)
    model = ResNet20().to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(64, 1, 28, 28).to(memory_format=fmt)
    targets = torch.tensor([(i * 7) % 10 for i in range(64)])
    x_inf = torch.randn(256, 1, 28, 28).to(memory_format=fmt)

    def step():
        opt.zero_grad()
        cosine_loss(model(x), targets).backward()
        opt.step()

    before = status_mib("VmRSS")
    reset_peak()
    train = median_secs(5, 30, step)
    train_peak = status_mib("VmHWM")
    model.eval()
    before_inf = status_mib("VmRSS")
    reset_peak()
    with torch.no_grad():
        infer = median_secs(5, 30, lambda: model(x_inf))
    infer_peak = status_mib("VmHWM")
    return train, train_peak, train_peak - before, infer, infer_peak, infer_peak - before_inf


_COMPILED = {}


def torch_compiled_inference():
    """Inference under torch.compile (eval mode, NCHW), seconds; or a string saying why not.
    Compiled once per process (the first call pays the compile), then timed like eager."""
    if "model" not in _COMPILED:
        try:
            torch.manual_seed(0)
            model = ResNet20().eval()
            _COMPILED["model"] = torch.compile(model)
            with torch.no_grad():
                _COMPILED["model"](torch.randn(256, 1, 28, 28))
        except Exception as e:  # no C++ compiler, no triton, ...: say so
            _COMPILED["model"] = f"unavailable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
    model = _COMPILED["model"]
    if isinstance(model, str):
        return model
    x_inf = torch.randn(256, 1, 28, 28)
    with torch.no_grad():
        return median_secs(5, 30, lambda: model(x_inf))


def compare_step(compile_inference):
    """Prints the step / inference tables; returns {row name: smallgrad / best eager torch}."""
    ours = run_smallgrad("resnet_step")
    set_threads(THREADS)
    res = {name: torch_step(fmt) for name, fmt in LAYOUTS}
    tr, inf = ours["train_ms"], ours["infer_ms"]
    best_train = min(r[0] for r in res.values()) * 1e3
    best_inf = min(r[3] for r in res.values()) * 1e3
    print(f"torch {torch.__version__}, {THREADS} threads")
    print("| workload | smallgrad ms | torch NCHW ms | torch channels_last ms | smallgrad / best torch "
          "| smallgrad images/s | best torch images/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| training step, batch 64 | {tr:.1f} | {res['NCHW'][0] * 1e3:.1f} | {res['channels_last'][0] * 1e3:.1f} "
          f"| {tr / best_train:.2f}x | {64e3 / tr:.0f} | {64e3 / best_train:.0f} |")
    print(f"| inference, batch 256 | {inf:.1f} | {res['NCHW'][3] * 1e3:.1f} | {res['channels_last'][3] * 1e3:.1f} "
          f"| {inf / best_inf:.2f}x | {256e3 / inf:.0f} | {256e3 / best_inf:.0f} |")
    ratios = {"training step: smallgrad / best torch eager": tr / best_train,
              "inference: smallgrad / best torch eager": inf / best_inf}
    if compile_inference:
        comp = torch_compiled_inference()
        if isinstance(comp, str):
            print(f"\ntorch.compile inference: {comp}")
        else:
            print(f"\ntorch.compile inference (NCHW, eval, no_grad): {comp * 1e3:.1f} ms; "
                  f"smallgrad / compiled = {inf / (comp * 1e3):.2f}x")
            ratios["inference: smallgrad / torch.compile"] = inf / (comp * 1e3)
    print()
    print("| peak RSS (MiB) | smallgrad | torch NCHW process (growth) | torch channels_last process (growth) |")
    print("|---|---:|---:|---:|")
    r0, r1 = res["NCHW"], res["channels_last"]
    print(f"| training step | {ours['train_peak_rss_mib']:.0f} | {r0[1]:.0f} ({r0[2]:.0f}) | {r1[1]:.0f} ({r1[2]:.0f}) |")
    print(f"| inference | {ours['infer_peak_rss_mib']:.0f} | {r0[4]:.0f} ({r0[5]:.0f}) | {r1[4]:.0f} ({r1[5]:.0f}) |")
    return ratios


def median(vals):
    """The middle value (the upper one of the two middle values for an even count)."""
    return sorted(vals)[len(vals) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="GEMM up to n = 512 only")
    ap.add_argument("--only", choices=["gemm", "conv", "step"], help="run one comparison")
    ap.add_argument("--runs", type=int, default=1, help="back-to-back runs (the issue's protocol: 3)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="inside each run, alternate smallgrad and PyTorch this many times per comparison "
                         "and take each ratio's median over the rounds (for hosts whose speed drifts)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile inference row")
    args = ap.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# smallgrad vs PyTorch {torch.__version__} / numpy {np.__version__} on {cpu}, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}")
    parts = (("gemm", lambda: compare_gemm(args.quick)), ("conv", compare_conv),
             ("step", lambda: compare_step(not args.no_compile)))
    runs = []
    for run in range(args.runs):
        ratios = {}
        for part, fn in parts:
            if args.only in (None, part):
                rounds = []
                for rnd in range(max(args.rounds, 1)):
                    label = f", round {rnd + 1} of {args.rounds}" if args.rounds > 1 else ""
                    print(f"\n## run {run + 1}: {part}{label}\n")
                    sys.stdout.flush()
                    rounds.append(fn())
                    sys.stdout.flush()
                ratios.update({k: median([r[k] for r in rounds]) for k in rounds[0]})
                if args.rounds > 1:
                    print(f"\n## run {run + 1}: {part}, each ratio's median over the {args.rounds} rounds\n")
                    print("| ratio | " + " | ".join(f"round {i + 1}" for i in range(args.rounds)) + " | median |")
                    print("|---|" + "---:|" * (args.rounds + 1))
                    for key in rounds[0]:
                        vals = [r[key] for r in rounds]
                        print(f"| {key} | " + " | ".join(f"{v:.2f}x" for v in vals) + f" | {median(vals):.2f}x |")
        runs.append(ratios)
    if args.runs > 1:
        print(f"\n## ratios of the {args.runs} runs and their median\n")
        print("| ratio | " + " | ".join(f"run {i + 1}" for i in range(args.runs)) + " | median |")
        print("|---|" + "---:|" * (args.runs + 1))
        for key in runs[0]:
            vals = [r.get(key, float("nan")) for r in runs]
            print(f"| {key} | " + " | ".join(f"{v:.2f}x" for v in vals) + f" | {median(vals):.2f}x |")


if __name__ == "__main__":
    main()
