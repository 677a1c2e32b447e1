#!/usr/bin/env python3
"""PyTorch (eager) on the GPU, the workloads of benches/cuda.rs, for scripts/gpu-check.sh.

GEMM GFLOP/s (torch.matmul, f32 and f64), and training steps of ResNet-20 (28x28x1, batch 128;
the model of scripts/compare_pytorch.py) and ResNet-50 (224x224x3, batch 32; torchvision's if
installed) with the seed's cosine loss (xent 0.1) and SGD (momentum 0.9, wd 5e-4). Median of
synchronised steps. Prints markdown tables in the format of the Rust bench.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from compare_pytorch import ResNet20, cosine_loss, median_secs  # noqa: E402


def median(warmup, reps, f):
    """Median seconds of f, each call synchronised (CUDA launches are asynchronous)."""

    def synced():
        f()
        torch.cuda.synchronize()

    return median_secs(warmup, reps, synced)


def gemm(n, dtype):
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    secs = median(3, 5 if n >= 4096 else 20, lambda: torch.matmul(a, b))
    return 2 * n**3 / secs / 1e9


def step_time(model, shape, classes, reps):
    model = model.cuda().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(*shape, device="cuda")
    y = torch.tensor([(i * 7) % classes for i in range(shape[0])], device="cuda")

    def step():
        opt.zero_grad()
        cosine_loss(model(x), y).backward()
        opt.step()

    return median(3, reps, step)


def main():
    torch.backends.cuda.matmul.allow_tf32 = False  # the GEMM table: plain f32, as smallgrad's default
    torch.backends.cudnn.allow_tf32 = False
    print(f"# PyTorch {torch.__version__} on {torch.cuda.get_device_name(0)} (GEMMs with TF32 off)")
    print("| GEMM n | f32 GFLOP/s | f64 GFLOP/s |")
    print("|---:|---:|---:|")
    for n in (1024, 2048, 4096, 8192):
        print(f"| {n} | {gemm(n, torch.float32):.0f} | {gemm(n, torch.float64):.0f} |")
    print()
    print("| training step (f32) | TF32 | ms (median) | images/s |")
    print("|---|---|---:|---:|")
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        on = "on" if tf32 else "off"
        t20 = step_time(ResNet20(), (128, 1, 28, 28), 10, 20)
        print(f"| ResNet-20, 28x28x1, batch 128 | {on} | {t20 * 1e3:.2f} | {128 / t20:.0f} |")
        try:
            import torchvision

            t50 = step_time(torchvision.models.resnet50(), (32, 3, 224, 224), 1000, 5)
            print(f"| ResNet-50, 224x224x3, batch 32 | {on} | {t50 * 1e3:.1f} | {32 / t50:.0f} |")
        except ImportError:
            print(f"| ResNet-50, 224x224x3, batch 32 | {on} | (torchvision not installed) | |")

if __name__ == "__main__":
    main()
