#!/usr/bin/env python3
"""Golden values for tests/training/optim.rs from PyTorch: torch.optim.SGD updates and LR schedulers.

Run by hand (never in CI):  /work/venv/bin/python scripts/gen_optim_fixtures.py
Writes tests/fixtures/optim_sgd.txt and tests/fixtures/optim_schedule.txt.

Line format (whitespace-separated; floats written with repr(), which round-trips exactly):
  torch VERSION
  optim_sgd.txt:
    case NAME lr momentum dampening weight_decay nesterov(0|1) steps
    param I SHAPE v...        initial values of parameter I, SHAPE like 2x3 (row-major)
    grad STEP I v...          gradient of parameter I at STEP (absent: no gradient that step)
    after STEP I v...         parameter I after STEP
    end
  optim_schedule.txt:
    cosine base_lr min_lr t_max             (CosineAnnealingLR, stepped once per epoch)
    step base_lr step_size gamma            (StepLR, stepped once per epoch)
    sgdr base_lr min_lr t0 t_mult           (CosineAnnealingWarmRestarts, step(epoch))
    lr EPOCH VALUE                          the scheduler's lr at EPOCH (for the last header)
"""

import os
import warnings

import torch

warnings.filterwarnings("ignore")
torch.set_default_dtype(torch.float64)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")

SHAPES = [(3,), (2, 2)]
STEPS = 4

# name, lr, momentum, dampening, weight_decay, nesterov, (step, param) pairs without a gradient
CASES = [
    ("plain", 0.1, 0.0, 0.0, 0.0, False, []),
    ("momentum", 0.05, 0.9, 0.0, 0.0, False, []),
    ("dampening", 0.05, 0.9, 0.5, 0.0, False, []),
    ("nesterov_wd", 0.1, 0.9, 0.0, 0.01, True, []),
    ("wd_damp", 0.2, 0.8, 0.1, 0.05, False, []),
    ("wd_only", 0.3, 0.0, 0.0, 0.1, False, []),
    ("skip", 0.1, 0.9, 0.0, 0.001, True, [(0, 1), (2, 1), (3, 0)]),
]


def fmt(t):
    return " ".join(repr(float(v)) for v in t.detach().reshape(-1).tolist())


def sgd_cases(lines):
    gen = torch.Generator().manual_seed(1234)
    for name, lr, mom, damp, wd, nest, missing in CASES:
        params = [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]
        grads = [[torch.randn(s, generator=gen) for s in SHAPES] for _ in range(STEPS)]
        lines.append(f"case {name} {lr!r} {mom!r} {damp!r} {wd!r} {int(nest)} {STEPS}")
        for i, p in enumerate(params):
            lines.append(f"param {i} {'x'.join(map(str, p.shape))} {fmt(p)}")
        opt = torch.optim.SGD(params, lr=lr, momentum=mom, dampening=damp, weight_decay=wd,
                              nesterov=nest, foreach=False)
        for step in range(STEPS):
            for i, p in enumerate(params):
                if (step, i) in missing:
                    p.grad = None
                else:
                    p.grad = grads[step][i].clone()
                    lines.append(f"grad {step} {i} {fmt(p.grad)}")
            opt.step()
            for i, p in enumerate(params):
                lines.append(f"after {step} {i} {fmt(p)}")
        lines.append("end")


def dummy_opt(lr):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def schedule_cases(lines):
    for base, eta_min, t_max in [(0.1, 0.0, 10), (0.5, 0.01, 7)]:
        opt = dummy_opt(base)
        s = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
        lines.append(f"cosine {base!r} {eta_min!r} {t_max}")
        for epoch in range(2 * t_max + 1):
            lines.append(f"lr {epoch} {s.get_last_lr()[0]!r}")
            opt.step()
            s.step()
    for base, step_size, gamma in [(0.1, 3, 0.1), (1.0, 2, 0.5)]:
        opt = dummy_opt(base)
        s = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
        lines.append(f"step {base!r} {step_size} {gamma!r}")
        for epoch in range(12):
            lines.append(f"lr {epoch} {s.get_last_lr()[0]!r}")
            opt.step()
            s.step()
    for base, eta_min, t0, t_mult in [(0.1, 0.0, 10, 1), (0.1, 0.001, 5, 2), (0.2, 0.0, 3, 3)]:
        opt = dummy_opt(base)
        s = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=t0, T_mult=t_mult,
                                                                 eta_min=eta_min)
        lines.append(f"sgdr {base!r} {eta_min!r} {t0} {t_mult}")
        epochs = [e * 0.25 for e in range(0, 4 * 40)] + [float(t0 * 7), 100.0, 137.5]
        for epoch in epochs:
            opt.step()
            s.step(epoch)
            lines.append(f"lr {epoch!r} {s.get_last_lr()[0]!r}")


def main():
    os.makedirs(OUT, exist_ok=True)
    header = [f"torch {torch.__version__}"]
    sgd = list(header)
    sgd_cases(sgd)
    with open(os.path.join(OUT, "optim_sgd.txt"), "w") as f:
        f.write("\n".join(sgd) + "\n")
    sched = list(header)
    schedule_cases(sched)
    with open(os.path.join(OUT, "optim_schedule.txt"), "w") as f:
        f.write("\n".join(sched) + "\n")


if __name__ == "__main__":
    main()
