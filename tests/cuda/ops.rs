//! The CUDA backend against the CPU (feature `cuda`): every op's forward and backward on random
//! inputs from the CPU suite's strategies, CUDA result vs CPU result within
//! `|a - b| <= atol + rtol * s`, where `s` bounds the sum of |terms| of each output (the op
//! applied to |inputs| and |upstream gradient|, plus |result|): summation orders differ between
//! the devices. Also gradcheck run directly on the GPU in f64, a ResNet training step on both
//! devices, the caching allocator's reuse, and the error paths.
//!
//! Without a GPU (or against the CI's stub libraries) each test prints one line,
//! `no CUDA device: skipping <test> (...)`, and returns.

use crate::common::cuda::{gpu, tiny_resnet};
use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use smallgrad::loss::{CosineLoss, Reduction, cross_entropy};
use smallgrad::nn::resnet::{CifarResNetConfig, cifar_resnet};
use smallgrad::nn::{self, Module};
use smallgrad::optim::{Sgd, SgdConfig, clip_grad_norm};
use smallgrad::{Device, Error, Float, GradcheckOptions, Result, Rng, Tensor, gradcheck};

const CASES: u32 = 48;
const F64_TOL: (f64, f64) = (1e-12, 1e-12); // (rtol, atol)
const F32_TOL: (f64, f64) = (1e-5, 1e-5);

/// Runs `f` on `cases` values of `strategy` (after the GPU check).
fn run_cases<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    f: impl Fn(S::Value, Device) -> std::result::Result<(), TestCaseError>,
) {
    let Some(dev) = gpu(name) else { return };
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(&strategy, |v| f(v, dev)) {
        panic!("{name}: {e}");
    }
}

fn fail(name: &str, e: Error) -> TestCaseError {
    TestCaseError::fail(format!("{name}: {e}"))
}

fn cast<T: Float>(t: &Tensor<f64>) -> Tensor<T> {
    let v = t.to_vec().unwrap().into_iter().map(T::from_f64).collect();
    Tensor::from_vec(v, t.shape(), t.device()).unwrap()
}

fn host<T: Float>(t: &Tensor<T>) -> Vec<f64> {
    t.to_vec().unwrap().into_iter().map(|v| v.to_f64()).collect()
}

/// Elementwise `|a - b| <= atol + rtol * s` (NaN only where both are NaN).
fn close(
    what: &str,
    a: &[f64],
    b: &[f64],
    s: &[f64],
    (rtol, atol): (f64, f64),
) -> std::result::Result<(), TestCaseError> {
    if a.len() != b.len() {
        return Err(TestCaseError::fail(format!(
            "{what}: {} vs {} values",
            a.len(),
            b.len()
        )));
    }
    for i in 0..a.len() {
        if a[i].is_nan() && b[i].is_nan() {
            continue;
        }
        let tol = atol + rtol * s[i];
        let diff = (a[i] - b[i]).abs();
        if diff.is_nan() || diff > tol {
            return Err(TestCaseError::fail(format!(
                "{what}[{i}]: cuda {} vs cpu {} (|diff| {:e} > {tol:e})",
                a[i],
                b[i],
                (a[i] - b[i]).abs()
            )));
        }
    }
    Ok(())
}

/// Forward and backward of `op` on the GPU vs the CPU, in `T`. The backward starts from a
/// random upstream gradient; every input gets its gradient compared.
fn compare<T: Float>(
    name: &str,
    op: impl Fn(&[Tensor<T>]) -> Result<Tensor<T>>,
    inputs: &[Tensor<f64>],
    seed: u64,
    dev: Device,
    tol: (f64, f64),
) -> std::result::Result<(), TestCaseError> {
    let run = |xs: &[Tensor<f64>], absolute: bool, device: Device| -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let leaves: Vec<Tensor<T>> = xs
            .iter()
            .map(|x| {
                let x = if absolute { x.abs().unwrap() } else { x.clone() };
                cast::<T>(&x).to_device(device).unwrap().requires_grad()
            })
            .collect();
        let out = op(&leaves)?;
        let r = upstream(out.shape(), seed);
        let r = if absolute { r.abs()? } else { r };
        let r = cast::<T>(&r).to_device(device)?;
        out.mul(&r)?.sum()?.backward()?;
        let grads = leaves
            .iter()
            .map(|l| l.grad().map(|g| host(&g)).unwrap_or_else(|| vec![0.0; l.numel()]))
            .collect();
        Ok((host(&out), grads))
    };
    let (yc, gc) = run(inputs, false, Device::Cpu).map_err(|e| fail(name, e))?;
    let (yg, gg) = run(inputs, false, dev).map_err(|e| fail(name, e))?;
    let (ym, gm) = run(inputs, true, Device::Cpu).map_err(|e| fail(name, e))?;
    let scale = |r: &[f64], m: &[f64]| -> Vec<f64> {
        r.iter()
            .zip(m)
            .map(|(a, b)| a.abs() + if b.is_finite() { b.abs() } else { 0.0 })
            .collect()
    };
    close(&format!("{name} forward"), &yg, &yc, &scale(&yc, &ym), tol)?;
    for (i, ((g, c), m)) in gg.iter().zip(&gc).zip(&gm).enumerate() {
        close(&format!("{name} d/dinput{i}"), g, c, &scale(c, m), tol)?;
    }
    Ok(())
}

#[test]
fn elementwise_binary_with_broadcasting() {
    run_cases(
        "elementwise_binary_with_broadcasting",
        CASES,
        (broadcast_pair(4), any::<u64>()),
        |((sa, sb), seed), dev| {
            let mut rng = Rng::new(seed);
            let a = normal(&sa, &mut rng);
            let b = away_from_zero(&sb, &mut rng);
            compare::<f64>("add", |x| x[0].add(&x[1]), &[a.clone(), b.clone()], seed, dev, F64_TOL)?;
            compare::<f64>("sub", |x| x[0].sub(&x[1]), &[a.clone(), b.clone()], seed, dev, F64_TOL)?;
            compare::<f64>("mul", |x| x[0].mul(&x[1]), &[a.clone(), b.clone()], seed, dev, F64_TOL)?;
            compare::<f64>("div", |x| x[0].div(&x[1]), &[a.clone(), b.clone()], seed, dev, F64_TOL)?;
            compare::<f32>("mul f32", |x| x[0].mul(&x[1]), &[a, b], seed, dev, F32_TOL)
        },
    );
}

#[test]
fn elementwise_unary() {
    run_cases(
        "elementwise_unary",
        CASES,
        (shape(0, 4, 120), any::<u64>()),
        |(s, seed), dev| {
            let mut rng = Rng::new(seed);
            let x = normal(&s, &mut rng);
            let pos = uniform_in(&s, &mut rng, 0.2, 2.0);
            let nz = away_from_zero(&s, &mut rng);
            let t = F64_TOL;
            compare::<f64>("neg", |x| x[0].neg(), std::slice::from_ref(&x), seed, dev, t)?;
            compare::<f64>("exp", |x| x[0].exp(), std::slice::from_ref(&x), seed, dev, t)?;
            compare::<f64>("log", |x| x[0].log(), std::slice::from_ref(&pos), seed, dev, t)?;
            compare::<f64>("sqrt", |x| x[0].sqrt(), std::slice::from_ref(&pos), seed, dev, t)?;
            compare::<f64>("abs", |x| x[0].abs(), std::slice::from_ref(&nz), seed, dev, t)?;
            compare::<f64>("relu", |x| x[0].relu(), std::slice::from_ref(&nz), seed, dev, t)?;
            compare::<f64>("tanh", |x| x[0].tanh(), std::slice::from_ref(&x), seed, dev, t)?;
            compare::<f64>("sigmoid", |x| x[0].sigmoid(), std::slice::from_ref(&x), seed, dev, t)?;
            compare::<f64>("powf", |x| x[0].powf(2.5), std::slice::from_ref(&pos), seed, dev, t)?;
            compare::<f64>(
                "clamp_min",
                |x| x[0].clamp_min(0.3),
                &[away_from(&s, &mut rng, 0.3)],
                seed,
                dev,
                t,
            )?;
            compare::<f64>(
                "add_scalar",
                |x| x[0].add_scalar(-1.5),
                std::slice::from_ref(&x),
                seed,
                dev,
                t,
            )?;
            compare::<f64>(
                "mul_scalar",
                |x| x[0].mul_scalar(3.0),
                std::slice::from_ref(&x),
                seed,
                dev,
                t,
            )?;
            compare::<f32>("tanh f32", |x| x[0].tanh(), &[x], seed, dev, F32_TOL)
        },
    );
}

#[test]
fn reductions() {
    run_cases(
        "reductions",
        CASES,
        (shape_and_dims(4, 150), any::<u64>()),
        |((s, dims), seed), dev| {
            let mut rng = Rng::new(seed);
            let x = normal(&s, &mut rng);
            let t = F64_TOL;
            compare::<f64>("sum", |x| x[0].sum(), std::slice::from_ref(&x), seed, dev, t)?;
            compare::<f64>("mean", |x| x[0].mean(), std::slice::from_ref(&x), seed, dev, t)?;
            compare::<f64>(
                "sum_dim",
                |x| x[0].sum_dim(&dims, false),
                std::slice::from_ref(&x),
                seed,
                dev,
                t,
            )?;
            compare::<f64>(
                "mean_dim",
                |x| x[0].mean_dim(&dims, true),
                std::slice::from_ref(&x),
                seed,
                dev,
                t,
            )?;
            compare::<f32>("sum_dim f32", |x| x[0].sum_dim(&dims, true), &[x], seed, dev, F32_TOL)
        },
    );
}

/// Long rows and full reductions of big tensors: the GPU sums them in two stages (parts of each
/// row, uneven ones too, then the parts in order); sums, means and their gradients still match
/// the CPU.
#[test]
fn reductions_of_long_rows() {
    let shapes = vec![vec![50_001], vec![3, 20_000], vec![2, 9_000, 3]];
    run_cases(
        "reductions_long",
        6,
        (prop::sample::select(shapes), any::<u64>()),
        |(s, seed), dev| {
            let mut rng = Rng::new(seed);
            let x = normal(&s, &mut rng).add_scalar(0.25).unwrap();
            let one = std::slice::from_ref(&x);
            compare::<f64>("sum (long)", |x| x[0].sum(), one, seed, dev, F64_TOL)?;
            compare::<f64>("mean (long)", |x| x[0].mean(), one, seed, dev, F64_TOL)?;
            let last = s.len() - 1;
            compare::<f64>(
                "sum_dim (long)",
                |x| x[0].sum_dim(&[last], false),
                one,
                seed,
                dev,
                F64_TOL,
            )?;
            compare::<f32>("sum f32 (long)", |x| x[0].sum(), one, seed, dev, F32_TOL)
        },
    );
}

#[test]
fn along_one_dim() {
    run_cases(
        "along_one_dim",
        CASES,
        (shape_and_dim(4, 150), any::<u64>()),
        |((s, dim), seed), dev| {
            let mut rng = Rng::new(seed);
            let x = distinct(&s, &mut rng);
            let y = normal(&s, &mut rng);
            let t = F64_TOL;
            compare::<f64>(
                "max_dim",
                |x| x[0].max_dim(dim, false),
                std::slice::from_ref(&x),
                seed,
                dev,
                t,
            )?;
            compare::<f64>("softmax", |x| x[0].softmax(dim), std::slice::from_ref(&y), seed, dev, t)?;
            compare::<f64>(
                "log_softmax",
                |x| x[0].log_softmax(dim),
                std::slice::from_ref(&y),
                seed,
                dev,
                t,
            )?;
            compare::<f64>(
                "norm_dim",
                |x| x[0].norm_dim(dim, true),
                std::slice::from_ref(&x),
                seed,
                dev,
                t,
            )?;
            compare::<f64>(
                "normalize",
                |x| x[0].normalize(dim, 1e-12),
                std::slice::from_ref(&x),
                seed,
                dev,
                t,
            )?;
            compare::<f64>(
                "cosine_similarity",
                |x| x[0].cosine_similarity(&x[1], dim, 1e-8),
                &[x.clone(), y.clone()],
                seed,
                dev,
                t,
            )?;
            let on_gpu = x.to_device(dev).map_err(|e| fail("argmax", e))?;
            prop_assert_eq!(on_gpu.argmax(dim).unwrap(), x.argmax(dim).unwrap());
            compare::<f32>("log_softmax f32", |x| x[0].log_softmax(dim), &[y], seed, dev, F32_TOL)
        },
    );
}

/// Long contiguous rows (>= 64 values): softmax, log-softmax and the L2 norm run one block per
/// row on the GPU; forward and backward still match the CPU, an all-`-inf`-but-one row too.
#[test]
fn softmax_and_norm_of_long_rows() {
    let shapes = vec![vec![3, 64], vec![5, 1000], vec![2, 3, 257]];
    run_cases(
        "softmax_long_rows",
        8,
        (prop::sample::select(shapes), any::<u64>()),
        |(s, seed), dev| {
            let mut rng = Rng::new(seed);
            let x = normal(&s, &mut rng).mul_scalar(4.0).unwrap();
            let last = s.len() - 1;
            let one = std::slice::from_ref(&x);
            compare::<f64>("softmax (rows)", |x| x[0].softmax(last), one, seed, dev, F64_TOL)?;
            compare::<f64>(
                "log_softmax (rows)",
                |x| x[0].log_softmax(last),
                one,
                seed,
                dev,
                F64_TOL,
            )?;
            compare::<f64>(
                "norm_dim (rows)",
                |x| x[0].norm_dim(last, false),
                one,
                seed,
                dev,
                F64_TOL,
            )?;
            compare::<f32>(
                "log_softmax f32 (rows)",
                |x| x[0].log_softmax(last),
                one,
                seed,
                dev,
                F32_TOL,
            )?;
            // A row that is -inf but for one value: exactly one-hot, on both devices.
            let row = s[last];
            let mut v = vec![f64::NEG_INFINITY; row];
            v[row / 2] = 1.0;
            let t = Tensor::from_vec(v, &[1, row], Device::Cpu).unwrap();
            let want = host(&t.softmax(1).unwrap());
            let got = host(&t.to_device(dev).unwrap().softmax(1).unwrap());
            prop_assert_eq!(got, want);
            Ok(())
        },
    );
}

#[test]
fn shape_ops() {
    run_cases(
        "shape_ops",
        CASES,
        (shape_and_perm(5, 200), reducible_pair(4), any::<u64>()),
        |((s, perm), (big, small), seed), dev| {
            let mut rng = Rng::new(seed);
            let x = normal(&s, &mut rng);
            let t = F64_TOL;
            compare::<f64>(
                "permute",
                |x| x[0].permute(&perm),
                std::slice::from_ref(&x),
                seed,
                dev,
                t,
            )?;
            let n: usize = s.iter().product();
            compare::<f64>("reshape", |x| x[0].reshape(&[n]), &[x], seed, dev, t)?;
            let small_t = normal(&small, &mut rng);
            compare::<f64>("expand", |x| x[0].expand(&big), &[small_t], seed, dev, t)?;
            let big_t = normal(&big, &mut rng);
            compare::<f64>("sum_to", |x| x[0].sum_to(&small), &[big_t], seed, dev, t)
        },
    );
}

#[test]
fn matmul() {
    let dims = (1usize..=3, 1usize..=9, 0usize..=9, 1usize..=9, 0u8..3, any::<u64>());
    run_cases("matmul", CASES, dims, |(b, m, k, n, kind, seed), dev| {
        let mut rng = Rng::new(seed);
        let (sa, sb): (Vec<usize>, Vec<usize>) = match kind {
            0 => (vec![m, k], vec![k, n]),
            1 => (vec![b, m, k], vec![b, k, n]),
            _ => (vec![b, m, k], vec![k, n]),
        };
        let (a, bb) = (normal(&sa, &mut rng), normal(&sb, &mut rng));
        compare::<f64>(
            "matmul",
            |x| x[0].matmul(&x[1]),
            &[a.clone(), bb.clone()],
            seed,
            dev,
            F64_TOL,
        )?;
        compare::<f32>("matmul f32", |x| x[0].matmul(&x[1]), &[a, bb], seed, dev, F32_TOL)
    });
}

#[test]
fn conv2d() {
    run_cases("conv2d", CASES, conv_case(400), |c, dev| {
        let mut rng = Rng::new(c.seed);
        let x = normal(&c.input_shape(), &mut rng);
        let w = normal(&c.weight_shape(), &mut rng);
        let b = normal(&[c.c_out], &mut rng);
        let (st, pad) = ((c.sh, c.sw), (c.ph, c.pw));
        compare::<f64>(
            "conv2d",
            |x| x[0].conv2d(&x[1], None, st, pad),
            &[x.clone(), w.clone()],
            c.seed,
            dev,
            F64_TOL,
        )?;
        compare::<f64>(
            "conv2d+bias",
            |x| x[0].conv2d(&x[1], Some(&x[2]), st, pad),
            &[x.clone(), w.clone(), b.clone()],
            c.seed,
            dev,
            F64_TOL,
        )?;
        compare::<f32>(
            "conv2d f32",
            |x| x[0].conv2d(&x[1], Some(&x[2]), st, pad),
            &[x, w, b],
            c.seed,
            dev,
            F32_TOL,
        )
    });
}

/// The GPU's special paths: 1x1 stride-1 unpadded convolutions (no im2col / col2im: the input
/// is its own column matrix) and the weight gradient as one GEMM over a batch of several
/// images (folded layouts), each against the CPU, forward and both gradients.
#[test]
fn conv2d_pointwise_and_batch_wide_weight_gradient() {
    // (n, c_in, c_out, h, w, kernel, stride, pad)
    let geoms = vec![
        (1, 3, 4, 5, 5, 1, 1, 0),
        (5, 4, 6, 3, 4, 1, 1, 0),
        (4, 8, 2, 7, 1, 1, 1, 0),
        (6, 2, 3, 6, 6, 3, 1, 1),
        (5, 3, 4, 7, 5, 3, 2, 1),
        (4, 3, 2, 6, 6, 1, 2, 0), // 1x1 but strided: the im2col path
    ];
    run_cases(
        "conv2d_pointwise",
        12,
        (prop::sample::select(geoms), any::<u64>()),
        |((n, ci, co, h, w, k, s, p), seed), dev| {
            let mut rng = Rng::new(seed);
            let x = normal(&[n, ci, h, w], &mut rng);
            let wt = normal(&[co, ci, k, k], &mut rng);
            let b = normal(&[co], &mut rng);
            let conv = |x: &[Tensor<f64>]| x[0].conv2d(&x[1], Some(&x[2]), (s, s), (p, p));
            compare::<f64>(
                "conv2d (special paths)",
                conv,
                &[x.clone(), wt.clone(), b.clone()],
                seed,
                dev,
                F64_TOL,
            )?;
            let conv32 = |x: &[Tensor<f32>]| x[0].conv2d(&x[1], None, (s, s), (p, p));
            compare::<f32>("conv2d f32 (special paths)", conv32, &[x, wt], seed, dev, F32_TOL)
        },
    );
}

#[test]
fn pooling() {
    run_cases("pooling", CASES, (pool_case(), adaptive_case()), |(c, a), dev| {
        let mut rng = Rng::new(c.seed);
        let x = distinct(&c.input_shape(), &mut rng);
        let (k, st, pad) = ((c.kh, c.kw), (c.sh, c.sw), (c.ph, c.pw));
        compare::<f64>(
            "max_pool2d",
            |x| x[0].max_pool2d(k, st, pad),
            std::slice::from_ref(&x),
            c.seed,
            dev,
            F64_TOL,
        )?;
        compare::<f64>(
            "avg_pool2d",
            |x| x[0].avg_pool2d(k, st, pad),
            std::slice::from_ref(&x),
            c.seed,
            dev,
            F64_TOL,
        )?;
        compare::<f32>(
            "max_pool2d f32",
            |x| x[0].max_pool2d(k, st, pad),
            &[x],
            c.seed,
            dev,
            F32_TOL,
        )?;
        let y = normal(&[a.n, a.c, a.h, a.w], &mut Rng::new(a.seed));
        compare::<f64>(
            "adaptive_avg_pool2d",
            |x| x[0].adaptive_avg_pool2d((a.oh, a.ow)),
            &[y],
            a.seed,
            dev,
            F64_TOL,
        )
    });
}

/// `xs[0]` batch-normed with `xs[1]`, `xs[2]` as weight and bias when given (eps 1e-5).
fn bn_of<T: Float>(
    xs: &[Tensor<T>],
    running: Option<(&Tensor<T>, &Tensor<T>)>,
    training: bool,
    momentum: f64,
) -> Result<Tensor<T>> {
    let (w, b) = if xs.len() == 3 {
        (Some(&xs[1]), Some(&xs[2]))
    } else {
        (None, None)
    };
    let (m, v) = running.unzip();
    xs[0].batch_norm(m, v, w, b, training, momentum, 1e-5)
}

/// One training-mode batch norm of `inputs` on the CPU and on `dev`, each from the running
/// statistics `(rm, rv)`: the statistics it leaves behind must agree, relative to `|v| + floor`.
fn running_stats_agree(
    inputs: &[Tensor<f64>],
    (rm, rv): (&[f64], &[f64]),
    momentum: f64,
    floor: f64,
    dev: Device,
) -> std::result::Result<(), TestCaseError> {
    let stats = |d: Device| {
        let t = |v: &[f64]| Tensor::from_vec(v.to_vec(), &[v.len()], d).unwrap();
        (t(rm), t(rv))
    };
    let ((mc, vc), (mg, vg)) = (stats(Device::Cpu), stats(dev));
    bn_of(inputs, Some((&mc, &vc)), true, momentum).map_err(|e| fail("batch_norm (CPU)", e))?;
    let on_dev: Vec<Tensor<f64>> = inputs.iter().map(|t| t.to_device(dev).unwrap()).collect();
    bn_of(&on_dev, Some((&mg, &vg)), true, momentum).map_err(|e| fail("batch_norm (GPU)", e))?;
    let s = |t: &Tensor<f64>| host(t).iter().map(|v| v.abs() + floor).collect::<Vec<_>>();
    close("running_mean", &host(&mg), &host(&mc), &s(&mc), F64_TOL)?;
    close("running_var", &host(&vg), &host(&vc), &s(&vc), F64_TOL)
}

#[test]
fn batch_norm() {
    run_cases("batch_norm", CASES, bn_case(), |c, dev| {
        let mut rng = Rng::new(c.seed);
        let x = distinct(&c.shape, &mut rng);
        let ch = c.channels();
        let rm: Vec<f64> = (0..ch).map(|_| rng.normal()).collect();
        let rv: Vec<f64> = (0..ch).map(|_| 0.5 + rng.uniform()).collect();
        let (training, momentum, running) = (c.training, c.momentum, c.running);
        let op = |xs: &[Tensor<f64>]| {
            let d = xs[0].device();
            let (m, v) = (
                Tensor::from_vec(rm.clone(), &[ch], d)?,
                Tensor::from_vec(rv.clone(), &[ch], d)?,
            );
            bn_of(xs, running.then_some((&m, &v)), training, momentum)
        };
        let inputs = if c.affine {
            vec![x.clone(), normal(&[ch], &mut rng), normal(&[ch], &mut rng)]
        } else {
            vec![x.clone()]
        };
        compare::<f64>("batch_norm", op, &inputs, c.seed, dev, F64_TOL)?;
        // Running statistics live on the op's device; compare them after the op too.
        if running && training {
            running_stats_agree(&[x], (&rm, &rv), momentum, 10.0, dev)?;
        }
        Ok(())
    });
}

/// Channels with thousands of values: the GPU's two-stage reductions cut each channel into
/// several parts (uneven ones too) and combine their means and squared deviations; forward,
/// backward and the running statistics must still match the CPU's two-pass sums.
#[test]
fn batch_norm_over_many_values_per_channel() {
    let shapes = [vec![8, 3, 24, 24], vec![7, 3, 17, 23], vec![3000, 2]];
    let cases = (prop::sample::select(shapes.to_vec()), any::<bool>(), any::<u64>());
    run_cases("batch_norm_many", 6, cases, |(shape, affine, seed), dev| {
        let mut rng = Rng::new(seed);
        let ch = shape[1];
        let x = normal(&shape, &mut rng)
            .mul_scalar(3.0)
            .unwrap()
            .add_scalar(1.5)
            .unwrap();
        let inputs = if affine {
            vec![x, normal(&[ch], &mut rng), normal(&[ch], &mut rng)]
        } else {
            vec![x]
        };
        fn fresh<T: Float>(xs: &[Tensor<T>]) -> Result<Tensor<T>> {
            let (c, d) = (xs[0].shape()[1], xs[0].device());
            let (rm, rv) = (Tensor::zeros(&[c], d)?, Tensor::ones(&[c], d)?);
            bn_of(xs, Some((&rm, &rv)), true, 0.1)
        }
        compare::<f64>("batch_norm (many values)", fresh, &inputs, seed, dev, F64_TOL)?;
        compare::<f32>("batch_norm f32 (many values)", fresh, &inputs, seed, dev, F32_TOL)?;
        running_stats_agree(&inputs, (&vec![0.0; ch], &vec![1.0; ch]), 0.1, 1.0, dev)
    });
}

#[test]
fn losses() {
    run_cases(
        "losses",
        CASES,
        (1usize..=6, 2usize..=7, any::<u64>()),
        |(n, classes, seed), dev| {
            let mut rng = Rng::new(seed);
            let logits = normal(&[n, classes], &mut rng);
            let tg = targets(n, classes, &mut rng);
            compare::<f64>(
                "cross_entropy",
                |x| cross_entropy(&x[0], &tg, Reduction::Mean),
                std::slice::from_ref(&logits),
                seed,
                dev,
                F64_TOL,
            )?;
            compare::<f64>(
                "cross_entropy(sum)",
                |x| cross_entropy(&x[0], &tg, Reduction::Sum),
                std::slice::from_ref(&logits),
                seed,
                dev,
                F64_TOL,
            )?;
            compare::<f64>(
                "cosine loss",
                |x| CosineLoss::default().forward(&x[0], &tg),
                std::slice::from_ref(&logits),
                seed,
                dev,
                F64_TOL,
            )?;
            compare::<f32>(
                "cosine loss f32",
                |x| CosineLoss::default().forward(&x[0], &tg),
                &[logits],
                seed,
                dev,
                F32_TOL,
            )
        },
    );
}

/// gradcheck itself on GPU tensors, in f64 (the finite differences run through the CUDA ops).
#[test]
fn gradcheck_on_the_gpu() {
    run_cases(
        "gradcheck_on_the_gpu",
        16,
        (conv_case(120), bn_case()),
        |(c, b), dev| {
            let mut rng = Rng::new(c.seed);
            let on = |t: Tensor<f64>| t.to_device(dev).unwrap();
            let x = on(normal(&c.input_shape(), &mut rng));
            let w = on(normal(&c.weight_shape(), &mut rng));
            let (st, pad) = ((c.sh, c.sw), (c.ph, c.pw));
            let opts = GradcheckOptions {
                seed: c.seed,
                ..Default::default()
            };
            gradcheck(|xs| xs[0].conv2d(&xs[1], None, st, pad)?.relu()?.sum(), &[x, w], &opts)
                .map_err(|e| fail("gradcheck conv2d", e))?;
            let xb = on(distinct(&b.shape, &mut Rng::new(b.seed)));
            let training = b.training;
            let ch = b.channels();
            let f = |xs: &[Tensor<f64>]| {
                let m = Tensor::zeros(&[ch], dev)?;
                let v = Tensor::ones(&[ch], dev)?;
                xs[0]
                    .batch_norm(Some(&m), Some(&v), None, None, training, 0.1, 1e-5)?
                    .tanh()?
                    .sum()
            };
            gradcheck(f, &[xb], &opts).map_err(|e| fail("gradcheck batch_norm", e))?;
            Ok(())
        },
    );
}

/// SGD with momentum, Nesterov, dampening and weight decay: three steps on both devices.
#[test]
fn sgd_steps_and_clipping() {
    run_cases(
        "sgd_steps_and_clipping",
        16,
        (shape(1, 3, 50), any::<bool>(), any::<u64>()),
        |(s, nesterov, seed), dev| {
            let mut rng = Rng::new(seed);
            let w0 = normal(&s, &mut rng);
            let target = normal(&s, &mut rng);
            let cfg = SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 5e-4,
                nesterov,
                dampening: if nesterov { 0.0 } else { 0.2 },
            };
            let train = |d: Device| -> Result<(Vec<f64>, Vec<f64>)> {
                // a fresh leaf on each device (to_device to the same device would share w0's storage)
                let w = Tensor::from_vec(w0.to_vec()?, w0.shape(), d)?.requires_grad();
                let tg = target.to_device(d)?;
                let mut opt = Sgd::new(vec![w.clone()], cfg)?;
                let mut norms = Vec::new();
                for _ in 0..3 {
                    opt.zero_grad();
                    w.sub(&tg)?.powf(2.0)?.sum()?.backward()?;
                    norms.push(clip_grad_norm(std::slice::from_ref(&w), 1.0)?);
                    opt.step()?;
                }
                let mut state = opt.try_state()?.momentum_buffers[0].clone().unwrap();
                state.extend(norms);
                Ok((host(&w), state))
            };
            let (wc, sc) = train(Device::Cpu).map_err(|e| fail("sgd cpu", e))?;
            let (wg, sg) = train(dev).map_err(|e| fail("sgd cuda", e))?;
            let s1 = |v: &[f64]| v.iter().map(|x| x.abs() + 1.0).collect::<Vec<_>>();
            close("sgd weights", &wg, &wc, &s1(&wc), F64_TOL)?;
            close("sgd momentum and norms", &sg, &sc, &s1(&sc), F64_TOL)
        },
    );
}

/// One training step of ResNet-20 (f32, batch 8, 12x12x1): loss, every parameter after the
/// step and the running statistics agree between the devices.
#[test]
fn resnet_training_step_matches_the_cpu() {
    let Some(dev) = gpu("resnet_training_step_matches_the_cpu") else {
        return;
    };
    let mut rng = Rng::new(3);
    let x = to_f32(&normal(&[8, 1, 12, 12], &mut rng));
    let y = targets(8, 10, &mut rng);
    let step = |d: Device| -> Result<(f64, Vec<Vec<f64>>)> {
        let model = tiny_resnet(d)?;
        let mut opt = Sgd::new(
            model.parameters(),
            SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 5e-4,
                ..Default::default()
            },
        )?;
        let loss = CosineLoss::default().forward(&model.forward(&x.to_device(d)?)?, &y)?;
        loss.backward()?;
        opt.step()?;
        let mut state: Vec<Vec<f64>> = nn::state_dict(&model).iter().map(|(_, t)| host(t)).collect();
        state.push(host(&loss));
        Ok((loss.item()?.to_f64(), state))
    };
    let (lc, sc) = step(Device::Cpu).unwrap();
    let (lg, sg) = step(dev).unwrap();
    assert!(
        (lc - lg).abs() <= F32_TOL.0 * (1.0 + lc.abs()),
        "loss cpu {lc} vs cuda {lg}"
    );
    for (i, (a, b)) in sg.iter().zip(&sc).enumerate() {
        let s: Vec<f64> = b.iter().map(|v| v.abs() + 1.0).collect();
        close(&format!("state tensor {i}"), a, b, &s, F32_TOL).unwrap();
    }
}

/// Five SGD steps (momentum, weight decay) of the same ResNet-20 in f64 on both devices, with
/// augmented-free random batches: the losses of every step and, at the end, every parameter,
/// running statistic and momentum buffer agree to f64 precision. Catches what one step cannot:
/// the momentum buffer's later updates, running statistics accumulating, saved tensors reused.
#[test]
fn five_f64_training_steps_track_the_cpu() {
    let Some(dev) = gpu("five_f64_training_steps_track_the_cpu") else {
        return;
    };
    let cfg = CifarResNetConfig {
        in_channels: 1,
        num_classes: 10,
        width: 1,
        seed: 11,
    };
    let run = |d: Device| -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
        let model = cifar_resnet::<f64>(20, &cfg)?;
        nn::to_device(&model, d)?;
        let sgd = SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            nesterov: true,
            ..Default::default()
        };
        let mut opt = Sgd::new(model.parameters(), sgd)?;
        let mut rng = Rng::new(21);
        let mut losses = Vec::new();
        for _ in 0..5 {
            let x = normal(&[6, 1, 10, 10], &mut rng).to_device(d)?;
            let y = targets(6, 10, &mut rng);
            opt.zero_grad();
            let loss = CosineLoss::default().forward(&model.forward(&x)?, &y)?;
            loss.backward()?;
            opt.step()?;
            losses.push(loss.item()?);
        }
        let mut state: Vec<Vec<f64>> = nn::state_dict(&model).iter().map(|(_, t)| host(t)).collect();
        state.extend(opt.try_state()?.momentum_buffers.into_iter().flatten());
        Ok((losses, state))
    };
    let (lc, sc) = run(Device::Cpu).unwrap();
    let (lg, sg) = run(dev).unwrap();
    let ones = |v: &[f64]| v.iter().map(|x| x.abs() + 1.0).collect::<Vec<_>>();
    close("losses", &lg, &lc, &ones(&lc), (1e-9, 1e-9)).unwrap();
    assert_eq!(sg.len(), sc.len());
    for (i, (a, b)) in sg.iter().zip(&sc).enumerate() {
        close(&format!("state tensor {i}"), a, b, &ones(b), (1e-8, 1e-8)).unwrap();
    }
}

#[test]
fn errors_device_mismatch_oom_and_round_trips() {
    let Some(dev) = gpu("errors_device_mismatch_oom_and_round_trips") else {
        return;
    };
    let a = Tensor::<f32>::ones(&[3], Device::Cpu).unwrap();
    let b = Tensor::<f32>::ones(&[3], dev).unwrap();
    let e = a.add(&b).unwrap_err();
    assert!(matches!(e, Error::Device { .. }), "{e}");
    let e = b
        .reshape(&[1, 3])
        .unwrap()
        .matmul(&Tensor::ones(&[3, 1], Device::Cpu).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::Device { .. }), "{e}");
    // 2^40 f32 = 4 TiB: more than any GPU; an Err, not an abort.
    let e = Tensor::<f32>::zeros(&[1 << 40], dev).unwrap_err();
    assert!(matches!(e, Error::OutOfMemory { .. }), "{e}");
    // the device still works after the failed allocation
    assert_eq!(b.sum().unwrap().item().unwrap(), 3.0);
    // to_device both ways, with the gradient flowing back to the CPU leaf
    let x = Tensor::<f64>::from_vec(vec![1.0, -2.0, 3.0], &[3], Device::Cpu)
        .unwrap()
        .requires_grad();
    let y = x.to_device(dev).unwrap().mul_scalar(2.0).unwrap().sum().unwrap();
    assert_eq!(y.device(), dev);
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![2.0, 2.0, 2.0]);
    assert_eq!(
        x.to_device(dev)
            .unwrap()
            .to_device(Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap(),
        x.to_vec().unwrap()
    );
    // a device that does not exist
    assert!(Device::Cuda(1 << 20).check_available().is_err());
}

/// The same op twice gives the same bits (deterministic reductions, no atomics).
#[test]
fn deterministic_on_the_gpu() {
    let Some(dev) = gpu("deterministic_on_the_gpu") else {
        return;
    };
    let x = to_f32(&normal(&[64, 16, 14, 14], &mut Rng::new(9)))
        .to_device(dev)
        .unwrap();
    let w = to_f32(&normal(&[16, 16, 3, 3], &mut Rng::new(10)))
        .to_device(dev)
        .unwrap()
        .requires_grad();
    let run = || {
        w.zero_grad();
        let y = x
            .conv2d(&w, None, 1, 1)
            .unwrap()
            .batch_norm(None, None, None, None, true, 0.1, 1e-5)
            .unwrap();
        let s = y.relu().unwrap().sum().unwrap();
        s.backward().unwrap();
        (s.to_vec().unwrap(), w.grad().unwrap().to_vec().unwrap())
    };
    let (a, b) = (run(), run());
    assert!(a.0.iter().zip(&b.0).all(|(p, q)| p.to_bits() == q.to_bits()));
    assert!(a.1.iter().zip(&b.1).all(|(p, q)| p.to_bits() == q.to_bits()));
}
