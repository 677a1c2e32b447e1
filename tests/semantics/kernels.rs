//! The reference kernels are the fast kernels' oracle: conv2d, matmul and batch norm give the
//! same outputs and gradients (to rounding) with `Kernels::Fast` and `Kernels::Reference`, over
//! random geometries that reach the fast paths (the wide grid with and without phase planes,
//! 1x1 convs, in-place operands, partial register tiles), in f64 and f32.

use crate::common::strategies::config;
use proptest::prelude::*;
use smallgrad::cpu::{Kernels, with_kernels};
use smallgrad::{Device, Float, Tensor};

/// Outputs then gradients of every input, with kernels `k`.
fn run<T: Float>(k: Kernels, inputs: &[Tensor<T>], f: &dyn Fn(&[Tensor<T>]) -> Tensor<T>) -> Vec<Vec<T>> {
    with_kernels(k, || {
        let inputs: Vec<Tensor<T>> = inputs.iter().map(|t| t.detach().requires_grad()).collect();
        let y = f(&inputs);
        // A fixed, non-uniform upstream gradient: sum(y * u).
        let u = Tensor::<T>::randn(y.shape(), 99, Device::Cpu).unwrap();
        y.mul(&u).unwrap().sum().unwrap().backward().unwrap();
        let mut out = vec![y.to_vec().unwrap()];
        out.extend(inputs.iter().map(|t| t.grad().unwrap().to_vec().unwrap()));
        out
    })
}

/// Fast and reference agree within `tol` times the largest magnitude of each result.
fn agree<T: Float>(inputs: &[Tensor<T>], tol: f64, f: &dyn Fn(&[Tensor<T>]) -> Tensor<T>) -> Result<(), TestCaseError> {
    let fast = run(Kernels::Fast, inputs, f);
    let reference = run(Kernels::Reference, inputs, f);
    for (i, (a, b)) in fast.iter().zip(&reference).enumerate() {
        prop_assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(1.0f64, |m, v| m.max(v.to_f64().abs()));
        for (j, (x, y)) in a.iter().zip(b).enumerate() {
            let d = (x.to_f64() - y.to_f64()).abs();
            prop_assert!(
                d <= tol * scale,
                "result {} [{}]: fast {} vs reference {}",
                i,
                j,
                x.to_f64(),
                y.to_f64()
            );
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Conv {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    k: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
    bias: bool,
    seed: u64,
}

fn conv() -> impl Strategy<Value = Conv> {
    conv_in(1..=20, 1..=40, 12)
}

/// Convs with `c` input and `o` output channels and up to `e + kernel - 1` pixels a side.
fn conv_in(
    c: std::ops::RangeInclusive<usize>,
    o: std::ops::RangeInclusive<usize>,
    e: usize,
) -> impl Strategy<Value = Conv> {
    (
        (1usize..=5, c, o, 1usize..=e, 1usize..=e),
        (1usize..=5, 1usize..=5, 1usize..=2, 1usize..=2, 0usize..=2, 0usize..=2),
        (any::<bool>(), any::<u64>()),
    )
        .prop_map(|((n, c, o, eh, ew), (kh, kw, sh, sw, ph, pw), (bias, seed))| Conv {
            n,
            c,
            o,
            h: kh.saturating_sub(2 * ph).max(1) + eh - 1,
            w: kw.saturating_sub(2 * pw).max(1) + ew - 1,
            k: (kh, kw),
            stride: (sh, sw),
            pad: (ph.min(kh - 1), pw.min(kw - 1)),
            bias,
            seed,
        })
}

/// 3x3 stride-1 convs with at least 32 input and 16 output channels, any padding up to 2: the
/// fast path runs their forward on Winograd F(2x2, 3x3) (and their input gradient too, from 32
/// output channels), with odd sizes leaving partial output tiles.
fn winograd_conv() -> impl Strategy<Value = Conv> {
    (
        (1usize..=4, 32usize..=40, 16usize..=40, 1usize..=10, 1usize..=10),
        (0usize..=2, 0usize..=2, any::<bool>(), any::<u64>()),
    )
        .prop_map(|((n, c, o, eh, ew), (ph, pw, bias, seed))| Conv {
            n,
            c,
            o,
            h: 3usize.saturating_sub(2 * ph).max(1) + eh - 1,
            w: 3usize.saturating_sub(2 * pw).max(1) + ew - 1,
            k: (3, 3),
            stride: (1, 1),
            pad: (ph, pw),
            bias,
            seed,
        })
}

fn conv_inputs<T: Float>(c: &Conv) -> Vec<Tensor<T>> {
    let cpu = Device::Cpu;
    let mut v = vec![
        Tensor::<T>::randn(&[c.n, c.c, c.h, c.w], c.seed, cpu).unwrap(),
        Tensor::<T>::randn(&[c.o, c.c, c.k.0, c.k.1], c.seed ^ 1, cpu).unwrap(),
    ];
    if c.bias {
        v.push(Tensor::<T>::randn(&[c.o], c.seed ^ 2, cpu).unwrap());
    }
    v
}

fn conv_fn<T: Float>(c: &Conv) -> impl Fn(&[Tensor<T>]) -> Tensor<T> {
    let (stride, pad) = (c.stride, c.pad);
    move |t: &[Tensor<T>]| t[0].conv2d(&t[1], t.get(2), stride, pad).unwrap()
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn conv2d_fast_matches_reference(c in conv()) {
        agree::<f64>(&conv_inputs(&c), 1e-12, &conv_fn(&c))?;
        agree::<f32>(&conv_inputs(&c), 2e-5, &conv_fn(&c))?;
    }

    /// At least 32 input and 64 output channels: the channels-last kernels of the fast path.
    #[test]
    fn conv2d_channels_last_fast_matches_reference(c in conv_in(32..=36, 64..=70, 8)) {
        agree::<f64>(&conv_inputs(&c), 1e-12, &conv_fn(&c))?;
        agree::<f32>(&conv_inputs(&c), 2e-5, &conv_fn(&c))?;
    }

    /// Winograd's forward and input gradient against the reference's direct loops (the f32
    /// tolerance covers its reassociated sums; `winograd.rs` measures the error itself).
    #[test]
    fn conv2d_winograd_fast_matches_reference(c in winograd_conv()) {
        agree::<f64>(&conv_inputs(&c), 1e-12, &conv_fn(&c))?;
        agree::<f32>(&conv_inputs(&c), 2e-5, &conv_fn(&c))?;
    }

    #[test]
    fn matmul_fast_matches_reference(b in 1usize..=3, m in 1usize..=70, k in 1usize..=300, n in 1usize..=70, seed in any::<u64>()) {
        let cpu = Device::Cpu;
        let inputs = |s: u64| vec![
            Tensor::<f64>::randn(&[b, m, k], s, cpu).unwrap(),
            Tensor::<f64>::randn(&[b, k, n], s ^ 1, cpu).unwrap(),
        ];
        agree::<f64>(&inputs(seed), 1e-12, &|t| t[0].matmul(&t[1]).unwrap())?;
    }

    #[test]
    fn batch_norm_fast_matches_reference(n in 1usize..=6, c in 1usize..=9, s in 2usize..=40, training in any::<bool>(), seed in any::<u64>()) {
        let cpu = Device::Cpu;
        let x = Tensor::<f64>::randn(&[n, c, s], seed, cpu).unwrap().add_scalar(3.0).unwrap();
        let w = Tensor::<f64>::rand(&[c], seed ^ 1, cpu).unwrap().add_scalar(0.5).unwrap();
        let b = Tensor::<f64>::randn(&[c], seed ^ 2, cpu).unwrap();
        let mean = Tensor::<f64>::randn(&[c], seed ^ 3, cpu).unwrap();
        let var = Tensor::<f64>::rand(&[c], seed ^ 4, cpu).unwrap().add_scalar(0.5).unwrap();
        agree::<f64>(&[x, w, b], 1e-10, &|t| {
            // Copies: training updates the running statistics in place.
            let (m, v) = (mean.add_scalar(0.0).unwrap(), var.add_scalar(0.0).unwrap());
            t[0].batch_norm(Some(&m), Some(&v), Some(&t[1]), Some(&t[2]), training, 0.1, 1e-5).unwrap()
        })?;
    }
}
