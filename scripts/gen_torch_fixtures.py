#!/usr/bin/env python3
"""Generate golden values from PyTorch for tests/semantics/torch.rs.

Run by hand (never in CI), from the repository root, with a Python that has PyTorch:

    python scripts/gen_torch_fixtures.py            # writes tests/fixtures/torch_fixtures.txt

and commit the output. Everything is float64 on the CPU, with fixed seeds, so the file is
reproducible. The point is to pin PyTorch semantics that finite differences cannot see:
padding conventions, biased vs unbiased variance, tie rules, reductions, eps rules.

File format (one item per line, parsed by a std-only Rust parser):

    # comment
    case NAME
    meta torch=VERSION op=OPNAME
    param NAME TOKEN TOKEN ...          (integers, floats or words: stride, reduction, ...)
    tensor NAME D0 D1 ... : V V V ...   (f64, row-major, repr precision; a 0-d tensor has no dims)
    index NAME D0 D1 ... : I I I ...    (integer tensors: targets, indices)
    end

Naming: inputs are the op's arguments (x, w, b, ...), `out` the forward result, `g` the upstream
gradient backpropagated with out.backward(g), `grad_<input>` the resulting gradients.
"""

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

TORCH = torch.__version__
OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "torch_fixtures.txt")

torch.set_default_dtype(torch.float64)
torch.use_deterministic_algorithms(True)

lines = []


def fmt(v):
    return repr(float(v))


def tensor(name, t):
    t = t.detach().to(torch.float64).contiguous()
    dims = " ".join(str(d) for d in t.shape)
    vals = " ".join(fmt(v) for v in t.reshape(-1).tolist())
    head = f"tensor {name} {dims}".rstrip()
    lines.append(f"{head} : {vals}")


def index(name, t):
    t = torch.as_tensor(t).contiguous()
    dims = " ".join(str(d) for d in t.shape)
    vals = " ".join(str(int(v)) for v in t.reshape(-1).tolist())
    head = f"index {name} {dims}".rstrip()
    lines.append(f"{head} : {vals}")


def param(name, *vals):
    lines.append(f"param {name} " + " ".join(str(v) for v in vals))


def begin(name, op):
    lines.append(f"case {name}")
    lines.append(f"meta torch={TORCH} op={op}")


def end():
    lines.append("end")


_seed = [1000]


def gen():
    """A fresh generator per use, so adding a case does not shift the others' inputs."""
    _seed[0] += 1
    return torch.Generator().manual_seed(_seed[0])


def randn(*shape, scale=1.0):
    return torch.randn(tuple(shape), generator=gen(), dtype=torch.float64) * scale


def leaf(t):
    return t.clone().detach().requires_grad_(True)


def backward(out):
    """Backprop a fixed random upstream gradient; returns it."""
    g = randn(*out.shape)
    out.backward(g)
    return g


def record(inputs, out, g):
    """inputs: list of (name, leaf tensor). Writes inputs, out, g and grads."""
    for name, t in inputs:
        tensor(name, t)
    tensor("out", out)
    tensor("g", g)
    for name, t in inputs:
        if t.requires_grad:
            tensor(f"grad_{name}", t.grad)


# ---------------------------------------------------------------- conv2d
def conv_case(name, xs, ws, stride, padding, bias):
    begin(name, "conv2d")
    param("stride", *stride)
    param("padding", *padding)
    param("bias", int(bias))
    x = leaf(randn(*xs))
    w = leaf(randn(*ws, scale=0.5))
    ins = [("x", x), ("w", w)]
    b = None
    if bias:
        b = leaf(randn(ws[0]))
        ins.append(("b", b))
    out = F.conv2d(x, w, b, stride=stride, padding=padding)
    g = backward(out)
    record(ins, out, g)
    end()


conv_case("conv2d_k32_s21_p10_bias", (2, 3, 5, 7), (4, 3, 3, 2), (2, 1), (1, 0), True)
conv_case("conv2d_k32_s21_p10_nobias", (2, 3, 5, 7), (4, 3, 3, 2), (2, 1), (1, 0), False)
conv_case("conv2d_k23_s12_p01_bias", (1, 2, 6, 7), (3, 2, 2, 3), (1, 2), (0, 1), True)
conv_case("conv2d_stem_k7_s2_p3_11x9_bias", (2, 2, 11, 9), (3, 2, 7, 7), (2, 2), (3, 3), True)
conv_case("conv2d_stem_k7_s2_p3_11x9_nobias", (1, 3, 11, 9), (2, 3, 7, 7), (2, 2), (3, 3), False)
conv_case("conv2d_1x1_s2_nobias", (2, 3, 7, 6), (4, 3, 1, 1), (2, 2), (0, 0), False)
conv_case("conv2d_1x1_s2_bias", (2, 3, 7, 6), (4, 3, 1, 1), (2, 2), (0, 0), True)
conv_case("conv2d_k3_s1_p1_bias", (2, 2, 5, 5), (3, 2, 3, 3), (1, 1), (1, 1), True)


# ---------------------------------------------------------------- pooling
def pool_case(name, op, x, kernel, stride, padding):
    begin(name, op)
    param("kernel", *kernel)
    param("stride", *stride)
    param("padding", *padding)
    x = leaf(x)
    if op == "max_pool2d":
        out = F.max_pool2d(x, kernel, stride, padding)
    else:
        out = F.avg_pool2d(x, kernel, stride, padding)  # count_include_pad=True (default)
    g = backward(out)
    record([("x", x)], out, g)
    end()


pool_case("max_pool2d_k3_s2_p1_7x9", "max_pool2d", randn(2, 2, 7, 9), (3, 3), (2, 2), (1, 1))
pool_case("max_pool2d_k3_s2_p1_6x5", "max_pool2d", randn(1, 3, 6, 5), (3, 3), (2, 2), (1, 1))
pool_case("max_pool2d_k23_s12_p11", "max_pool2d", randn(1, 2, 5, 6), (2, 3), (1, 2), (1, 1))
# All values negative: padding must act as -inf, not 0.
pool_case("max_pool2d_k3_s2_p1_negative", "max_pool2d", -1.0 - randn(1, 2, 5, 5).abs(), (3, 3), (2, 2), (1, 1))
# Ties: integer values with many repeats. PyTorch CPU scans each window row-major and keeps the
# first maximum (strict >), and the gradient goes to that index; overlapping windows accumulate.
ties = torch.randint(0, 3, (2, 2, 7, 7), generator=gen()).to(torch.float64)
pool_case("max_pool2d_ties_k3_s2_p1", "max_pool2d", ties, (3, 3), (2, 2), (1, 1))
pool_case("max_pool2d_ties_k2_s1_p0", "max_pool2d", ties[:, :, :5, :6], (2, 2), (1, 1), (0, 0))
pool_case("max_pool2d_allequal_k2_s2_p1", "max_pool2d", torch.full((1, 1, 4, 5), 2.0), (2, 2), (2, 2), (1, 1))

pool_case("avg_pool2d_k3_s2_p1_7x7", "avg_pool2d", randn(2, 2, 7, 7), (3, 3), (2, 2), (1, 1))
pool_case("avg_pool2d_k32_s23_p11", "avg_pool2d", randn(1, 2, 7, 8), (3, 2), (2, 3), (1, 1))
pool_case("avg_pool2d_k2_s3_p1_odd", "avg_pool2d", randn(2, 1, 9, 6), (2, 2), (3, 3), (1, 1))
pool_case("avg_pool2d_k3_s1_p0", "avg_pool2d", randn(1, 2, 5, 6), (3, 3), (1, 1), (0, 0))


def adaptive_case(name, xs, out_size):
    begin(name, "adaptive_avg_pool2d")
    param("output_size", *out_size)
    x = leaf(randn(*xs))
    out = F.adaptive_avg_pool2d(x, out_size)
    g = backward(out)
    record([("x", x)], out, g)
    end()


adaptive_case("adaptive_avg_pool2d_7x5_to_3x2", (2, 3, 7, 5), (3, 2))
adaptive_case("adaptive_avg_pool2d_5x7_to_4x3", (1, 2, 5, 7), (4, 3))
adaptive_case("adaptive_avg_pool2d_6x5_to_1", (2, 3, 6, 5), (1, 1))
adaptive_case("adaptive_avg_pool2d_3x2_to_5x4_upsample", (1, 2, 3, 2), (5, 4))


# ---------------------------------------------------------------- batch norm
def bn_case(name, xs, training, momentum, eps, affine=True, running=True):
    begin(name, "batch_norm")
    param("training", int(training))
    param("momentum", fmt(momentum))
    param("eps", fmt(eps))
    param("affine", int(affine))
    param("running", int(running))
    c = xs[1]
    x = leaf(randn(*xs, scale=2.0) + 0.5)
    ins = [("x", x)]
    rm = rv = None
    if running:
        rm = randn(c, scale=0.3)
        rv = randn(c).abs() + 0.5
        tensor("running_mean", rm)
        tensor("running_var", rv)
        rm, rv = rm.clone(), rv.clone()
    w = b = None
    if affine:
        w = leaf(randn(c) + 1.0)
        b = leaf(randn(c))
        ins += [("w", w), ("b", b)]
    out = F.batch_norm(x, rm, rv, w, b, training=training, momentum=momentum, eps=eps)
    g = backward(out)
    record(ins, out, g)
    if running:
        tensor("running_mean_after", rm)
        tensor("running_var_after", rv)
    end()


bn_case("batch_norm_2d_train_m01", (6, 3), True, 0.1, 1e-5)
bn_case("batch_norm_2d_train_m03", (5, 4), True, 0.3, 1e-5)
bn_case("batch_norm_4d_train_m01", (3, 2, 4, 5), True, 0.1, 1e-5)
bn_case("batch_norm_4d_train_m03_eps1e-3", (2, 3, 3, 3), True, 0.3, 1e-3)
bn_case("batch_norm_4d_train_noaffine", (2, 3, 3, 2), True, 0.1, 1e-5, affine=False)
bn_case("batch_norm_4d_train_norunning", (2, 3, 3, 2), True, 0.1, 1e-5, running=False)
bn_case("batch_norm_2d_train_n2", (2, 3), True, 0.1, 1e-5)
bn_case("batch_norm_2d_eval", (6, 3), False, 0.1, 1e-5)
bn_case("batch_norm_4d_eval", (3, 2, 4, 5), False, 0.1, 1e-5)
bn_case("batch_norm_4d_eval_eps1e-2", (2, 3, 2, 3), False, 0.1, 1e-2)


# ---------------------------------------------------------------- softmax family
def softmax_case(name, op, x, dim):
    begin(name, op)
    param("dim", dim)
    x = leaf(x)
    out = F.softmax(x, dim) if op == "softmax" else F.log_softmax(x, dim)
    g = backward(out)
    record([("x", x)], out, g)
    end()


sx = randn(3, 4, 5, scale=2.0)
for op in ("softmax", "log_softmax"):
    for dim in (0, 1, 2):
        softmax_case(f"{op}_dim{dim}", op, sx, dim)
    # Large logits: must not overflow (max subtraction).
    softmax_case(f"{op}_large_dim1", op, randn(2, 4, scale=30.0) + 1000.0, 1)

REDUCTIONS = ("mean", "sum", "none")


def ce_case(name, logits, targets, reduction):
    begin(name, "cross_entropy")
    param("reduction", reduction)
    index("targets", targets)
    x = leaf(logits)
    out = F.cross_entropy(x, targets, reduction=reduction)
    g = backward(out)
    record([("x", x)], out, g)
    end()


ce_logits = randn(5, 4, scale=2.0)
ce_targets = torch.tensor([1, 0, 3, 3, 2])
for r in REDUCTIONS:
    ce_case(f"cross_entropy_{r}", ce_logits, ce_targets, r)


def normalize_case(name, x, dim, eps):
    begin(name, "normalize")
    param("dim", dim)
    param("eps", fmt(eps))
    x = leaf(x)
    out = F.normalize(x, p=2.0, dim=dim, eps=eps)
    g = backward(out)
    record([("x", x)], out, g)
    end()


nx = randn(5, 3)
nx[1] = 0.0  # zero row: out 0, grad g / eps
nx[2] = torch.tensor([3e-13, -4e-13, 1e-13])  # norm < eps: out x / eps, grad g / eps
nx[4] *= 1e-6  # small but above eps
normalize_case("normalize_dim1_zero_and_tiny_rows", nx, 1, 1e-12)
normalize_case("normalize_dim0_3d", randn(3, 4, 2), 0, 1e-12)
normalize_case("normalize_dim2_3d", randn(2, 3, 4), 2, 1e-12)
normalize_case("normalize_dim1_large_eps", randn(4, 3, scale=0.1), 1, 0.2)


def cos_case(name, a, b, dim, eps):
    begin(name, "cosine_similarity")
    param("dim", dim)
    param("eps", fmt(eps))
    a, b = leaf(a), leaf(b)
    out = F.cosine_similarity(a, b, dim=dim, eps=eps)
    g = backward(out)
    record([("a", a), ("b", b)], out, g)
    end()


ca = randn(5, 4)
ca[1] = torch.tensor([1e-10, -2e-10, 3e-11, 0.0])  # ||a|| < 1e-8: clamped to eps
ca[3] = 0.0  # zero row: cosine 0
cb = randn(5, 4)
cos_case("cosine_similarity_dim1_tiny_and_zero_rows", ca, cb, 1, 1e-8)
cos_case("cosine_similarity_broadcast_n1", randn(4, 5), randn(1, 5), 1, 1e-8)
cos_case("cosine_similarity_broadcast_1n_tiny", randn(1, 5) * 1e-10, randn(3, 5), 1, 1e-8)
cos_case("cosine_similarity_dim0_3d", randn(3, 2, 4), randn(3, 2, 4), 0, 1e-8)
cos_case("cosine_similarity_dim1_large_eps", randn(4, 3, scale=0.1), randn(4, 3), 1, 0.3)


class CosineLoss(nn.Module):
    """The seed's module, verbatim (see /work/shared/seed-cosine-loss.md)."""

    def __init__(self, xent=.1, reduction="mean"):
        super(CosineLoss, self).__init__()
        self.xent = xent
        self.reduction = reduction

    def forward(self, input, target):
        cent_loss = F.cross_entropy(F.normalize(input), target, reduction=self.reduction)
        cosine_losses = 1 - F.cosine_similarity(input, F.one_hot(target, num_classes=input.size(-1)))
        if self.reduction == "mean":
            cosine_loss = torch.mean(cosine_losses)
        elif self.reduction == "sum":
            cosine_loss = torch.sum(cosine_losses)
        else:
            cosine_loss = cosine_losses
        return cosine_loss + self.xent * cent_loss


def cosine_loss_case(name, logits, targets, reduction, xent):
    begin(name, "cosine_loss")
    param("reduction", reduction)
    param("xent", fmt(xent))
    index("targets", targets)
    x = leaf(logits)
    out = CosineLoss(xent=xent, reduction=reduction)(x, targets)
    g = backward(out)
    record([("x", x)], out, g)
    end()


cl_logits = randn(6, 5, scale=1.5)
cl_targets = torch.tensor([0, 4, 2, 2, 1, 3])
for r in REDUCTIONS:
    cosine_loss_case(f"cosine_loss_{r}", cl_logits, cl_targets, r, 0.1)
cosine_loss_case("cosine_loss_mean_xent05", cl_logits, cl_targets, "mean", 0.5)


# ---------------------------------------------------------------- reductions
def reduce_case(name, op, x, dims, keepdim):
    begin(name, op)
    param("dims", *dims)
    param("keepdim", int(keepdim))
    x = leaf(x)
    out = x.sum(dim=dims, keepdim=keepdim) if op == "sum_dim" else x.mean(dim=dims, keepdim=keepdim)
    g = backward(out)
    record([("x", x)], out, g)
    end()


rx = randn(2, 3, 4, 5)
for op in ("sum_dim", "mean_dim"):
    for dims in ((1,), (1, 3), (0, 2, 3), (0, 1, 2, 3)):
        for keepdim in (False, True):
            tag = "".join(str(d) for d in dims)
            reduce_case(f"{op}_{tag}_keep{int(keepdim)}", op, rx, dims, keepdim)


def max_case(name, x, dim, keepdim):
    begin(name, "max_dim")
    param("dim", dim)
    param("keepdim", int(keepdim))
    x = leaf(x)
    out, idx = torch.max(x, dim=dim, keepdim=keepdim)
    g = backward(out)
    record([("x", x)], out, g)
    index("indices", idx)  # what torch.max(dim) returns; the gradient goes there
    index("argmax", torch.argmax(x.detach(), dim=dim))
    end()


mx = torch.randint(0, 3, (3, 4, 5), generator=gen()).to(torch.float64)  # many ties
for dim in (0, 1, 2):
    for keepdim in (False, True):
        max_case(f"max_dim_ties_dim{dim}_keep{int(keepdim)}", mx, dim, keepdim)
max_case("max_dim_allequal_dim1", torch.full((2, 4), -1.5), 1, False)
max_case("max_dim_random_dim1", randn(3, 6), 1, False)


# ---------------------------------------------------------------- matmul
def matmul_case(name, a_shape, b_shape):
    begin(name, "matmul")
    a, b = leaf(randn(*a_shape)), leaf(randn(*b_shape))
    out = torch.matmul(a, b)
    g = backward(out)
    record([("a", a), ("b", b)], out, g)
    end()


matmul_case("matmul_2d", (3, 4), (4, 5))
matmul_case("matmul_batched", (2, 3, 4), (2, 4, 5))
matmul_case("matmul_batched_broadcast_rhs", (3, 2, 4), (4, 5))
matmul_case("matmul_batched_broadcast_rhs_k1", (2, 3, 1), (1, 2))


# ---------------------------------------------------------------- write
header = [
    "# Golden values from PyTorch for tests/semantics/torch.rs. DO NOT EDIT: regenerate with",
    "#   python scripts/gen_torch_fixtures.py",
    f"# torch={TORCH} python={sys.version.split()[0]} dtype=float64 device=cpu",
    "# Format: see the docstring of scripts/gen_torch_fixtures.py.",
]
os.makedirs(os.path.dirname(OUT_PATH), exist_ok=True)
with open(OUT_PATH, "w") as f:
    f.write("\n".join(header + lines) + "\n")
ncases = sum(1 for line in lines if line.startswith("case "))
print(f"wrote {ncases} cases to {os.path.normpath(OUT_PATH)} (torch {TORCH})")
