//! Shared proptest strategies and input generators for smallgrad's test suites (the CPU suites
//! and the CUDA suite, which draws the same cases and compares the devices).
//!
//! Strategies generate *parameters* (shapes, dims, kernel/stride/padding, a seed); the values
//! are drawn from [`smallgrad::Rng`] with that seed. Every generator that feeds a
//! non-differentiable point of an op keeps its values AWAY FROM THE KINK by a margin far larger
//! than gradcheck's finite-difference step (1e-6):
//! - relu / abs: `sign * (0.1 + |u|)`;
//! - clamp_min: values `t ± (0.1 + |u|)` around the threshold `t`;
//! - max_pool2d / max_dim: a random permutation of values spaced 0.1 apart plus noise below
//!   0.02, so every window has one clear maximum;
//! - normalize / cosine_similarity / norm_dim: norms >= 0.1 (well above 1e-3).
#![allow(dead_code)]

use proptest::prelude::*;
use smallgrad::{Device, Rng, Tensor};

/// `ProptestConfig::with_cases(n)`: `n` from the `PROPTEST_CASES` env var if set, else
/// `default_cases`. No regression files are written, and shrinking is bounded so a failure
/// reports quickly.
pub fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default_cases);
    let mut c = ProptestConfig::with_cases(cases);
    c.failure_persistence = None;
    c.max_shrink_iters = 200;
    c
}

// ------------------------------------------------------------------------------ shapes

/// One dimension: often 1 (batch 1, broadcastable), otherwise 2..=5 (odd sizes included).
pub fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(1usize), 5 => 2usize..=5]
}

/// A shape of rank `min_rank..=max_rank` with at most `max_numel` elements.
pub fn shape(min_rank: usize, max_rank: usize, max_numel: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(dim(), min_rank..=max_rank)
        .prop_filter("numel too large", move |s| s.iter().product::<usize>() <= max_numel)
}

/// Two shapes that broadcast together (NumPy rules): both derive from one base shape, with
/// random dims set to 1 and, on one side, leading dims dropped (ranks differ).
pub fn broadcast_pair(max_rank: usize) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(1, max_rank, 120)
        .prop_flat_map(|base| {
            let r = base.len();
            (
                Just(base),
                prop::collection::vec(any::<bool>(), r),
                prop::collection::vec(any::<bool>(), r),
                0..r,
                any::<bool>(),
            )
        })
        .prop_map(|(base, ones_a, ones_b, drop, swap)| {
            let a: Vec<usize> = base
                .iter()
                .zip(&ones_a)
                .skip(drop)
                .map(|(&d, &one)| if one { 1 } else { d })
                .collect();
            let b: Vec<usize> = base
                .iter()
                .zip(&ones_b)
                .map(|(&d, &one)| if one { 1 } else { d })
                .collect();
            if swap { (b, a) } else { (a, b) }
        })
}

/// `(big, small)`: `small` broadcasts to `big` (dims set to 1, leading dims dropped), as
/// `sum_to` and `expand` need.
pub fn reducible_pair(max_rank: usize) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(1, max_rank, 150)
        .prop_flat_map(|big| {
            let r = big.len();
            (Just(big), prop::collection::vec(any::<bool>(), r), 0..=r)
        })
        .prop_map(|(big, ones, drop)| {
            let small = big
                .iter()
                .zip(&ones)
                .skip(drop)
                .map(|(&d, &one)| if one { 1 } else { d })
                .collect();
            (big, small)
        })
}

/// A shape and one of its dims (every dim is reachable).
pub fn shape_and_dim(max_rank: usize, max_numel: usize) -> impl Strategy<Value = (Vec<usize>, usize)> {
    shape(1, max_rank, max_numel).prop_flat_map(|s| {
        let r = s.len();
        (Just(s), 0..r)
    })
}

/// A shape and a random set of distinct dims (possibly empty, which means "all dims").
pub fn shape_and_dims(max_rank: usize, max_numel: usize) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(1, max_rank, max_numel).prop_flat_map(|s| {
        let r = s.len();
        (
            Just(s),
            prop::sample::subsequence((0..r).collect::<Vec<_>>(), 0..=r).prop_shuffle(),
        )
    })
}

/// A shape and a random permutation of its dims.
pub fn shape_and_perm(max_rank: usize, max_numel: usize) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(1, max_rank, max_numel).prop_flat_map(|s| {
        let r = s.len();
        (Just(s), Just((0..r).collect::<Vec<_>>()).prop_shuffle())
    })
}

/// `(from, to)` with equal numel: `to` regroups a shuffle of `from`'s dims into random
/// products (so reshape changes the rank and the dim boundaries).
pub fn reshape_pair(max_rank: usize, max_numel: usize) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(1, max_rank, max_numel)
        .prop_flat_map(|s| {
            let r = s.len();
            (
                Just(s.clone()),
                Just(s).prop_shuffle(),
                prop::collection::vec(any::<bool>(), r),
                any::<bool>(),
            )
        })
        .prop_map(|(from, shuffled, merge, extra_one)| {
            let mut to: Vec<usize> = Vec::new();
            for (i, &d) in shuffled.iter().enumerate() {
                match to.last_mut() {
                    Some(last) if merge[i] => *last *= d,
                    _ => to.push(d),
                }
            }
            if extra_one {
                to.insert(0, 1);
            }
            (from, to)
        })
}

// ------------------------------------------------------------------------------ op params

/// conv2d parameters: kernel 1..=7, stride 1..=3, padding 0..=3, each chosen independently per
/// axis (so h != w is the common case), and an input large enough for at least one output.
#[derive(Debug, Clone)]
pub struct ConvCase {
    pub n: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub bias: bool,
    pub seed: u64,
}

impl ConvCase {
    pub fn input_shape(&self) -> Vec<usize> {
        vec![self.n, self.c_in, self.h, self.w]
    }
    pub fn weight_shape(&self) -> Vec<usize> {
        vec![self.c_out, self.c_in, self.kh, self.kw]
    }
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.ph - self.kh) / self.sh + 1,
            (self.w + 2 * self.pw - self.kw) / self.sw + 1,
        )
    }
}

/// Random valid conv2d cases with at most `max_numel` input elements and weight elements.
pub fn conv_case(max_numel: usize) -> impl Strategy<Value = ConvCase> {
    (
        (1usize..=2, 1usize..=3, 1usize..=3),
        (1usize..=7, 1usize..=7, 1usize..=3, 1usize..=3, 0usize..=3, 0usize..=3),
        (0usize..=3, 0usize..=3, any::<bool>(), any::<u64>()),
    )
        .prop_map(|((n, c_in, c_out), (kh, kw, sh, sw, ph, pw), (eh, ew, bias, seed))| {
            let h = kh.saturating_sub(2 * ph).max(1) + eh;
            let w = kw.saturating_sub(2 * pw).max(1) + ew;
            ConvCase {
                n,
                c_in,
                c_out,
                h,
                w,
                kh,
                kw,
                sh,
                sw,
                ph,
                pw,
                bias,
                seed,
            }
        })
        .prop_filter("too large", move |c| {
            c.n * c.c_in * c.h * c.w <= max_numel && c.c_out * c.c_in * c.kh * c.kw <= max_numel
        })
}

/// Pooling parameters: kernel 1..=4 and stride 1..=3 per axis with kernel != stride on both
/// axes (overlapping or gapped windows), padding <= kernel/2, input large enough.
#[derive(Debug, Clone)]
pub struct PoolCase {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub seed: u64,
}

impl PoolCase {
    pub fn input_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.h, self.w]
    }
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.ph - self.kh) / self.sh + 1,
            (self.w + 2 * self.pw - self.kw) / self.sw + 1,
        )
    }
}

pub fn pool_case() -> impl Strategy<Value = PoolCase> {
    (
        (1usize..=2, 1usize..=3),
        (1usize..=4, 1usize..=4, 1usize..=3, 1usize..=3),
    )
        .prop_filter("kernel == stride", |(_, (kh, kw, sh, sw))| kh != sh && kw != sw)
        .prop_flat_map(|((n, c), (kh, kw, sh, sw))| {
            (
                Just((n, c, kh, kw, sh, sw)),
                0..=kh / 2,
                0..=kw / 2,
                0usize..=4,
                0usize..=4,
                any::<u64>(),
            )
        })
        .prop_map(|((n, c, kh, kw, sh, sw), ph, pw, eh, ew, seed)| {
            let h = kh.saturating_sub(2 * ph).max(1) + eh;
            let w = kw.saturating_sub(2 * pw).max(1) + ew;
            PoolCase {
                n,
                c,
                h,
                w,
                kh,
                kw,
                sh,
                sw,
                ph,
                pw,
                seed,
            }
        })
}

/// adaptive_avg_pool2d: input 1..=7 per axis, output 1..=in+2 per axis (mostly not dividing
/// the input, sometimes larger than it).
#[derive(Debug, Clone)]
pub struct AdaptiveCase {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub seed: u64,
}

pub fn adaptive_case() -> impl Strategy<Value = AdaptiveCase> {
    (1usize..=2, 1usize..=3, 1usize..=7, 1usize..=7)
        .prop_flat_map(|(n, c, h, w)| (Just((n, c, h, w)), 1..=h + 2, 1..=w + 2, any::<u64>()))
        .prop_map(|((n, c, h, w), oh, ow, seed)| AdaptiveCase {
            n,
            c,
            h,
            w,
            oh,
            ow,
            seed,
        })
}

/// batch_norm: input [N,C] or [N,C,H,W]; training (then N*H*W >= 2) or eval (then running
/// statistics are given); affine or not; in training, running statistics given or not.
#[derive(Debug, Clone)]
pub struct BnCase {
    pub shape: Vec<usize>,
    pub training: bool,
    pub affine: bool,
    pub running: bool,
    pub momentum: f64,
    pub seed: u64,
}

impl BnCase {
    pub fn channels(&self) -> usize {
        self.shape[1]
    }
    /// Values per channel (N*H*W).
    pub fn per_channel(&self) -> usize {
        self.shape.iter().product::<usize>() / self.shape[1]
    }
}

pub fn bn_case() -> impl Strategy<Value = BnCase> {
    (
        prop_oneof![
            (1usize..=5, 1usize..=4).prop_map(|(n, c)| vec![n, c]),
            (1usize..=3, 1usize..=3, 1usize..=4, 1usize..=4).prop_map(|(n, c, h, w)| vec![n, c, h, w]),
        ],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![0.1, 0.3, 1.0]),
        any::<u64>(),
    )
        .prop_map(|(shape, training, affine, running, momentum, seed)| BnCase {
            shape,
            training,
            affine,
            // Eval mode needs running statistics.
            running: running || !training,
            momentum,
            seed,
        })
        .prop_filter("training needs >= 2 values per channel", |c| {
            !c.training || c.per_channel() >= 2
        })
}

// ------------------------------------------------------------------------------ values

/// A tensor of f64 values drawn by `f` from `Rng::new(seed)`-style generator `rng`.
pub fn tensor_with(shape: &[usize], rng: &mut Rng, mut f: impl FnMut(&mut Rng) -> f64) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|_| f(rng)).collect();
    Tensor::from_vec(data, shape, Device::Cpu).expect("tensor_with: valid shape")
}

/// N(0, 1) values.
pub fn normal(shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
    tensor_with(shape, rng, |r| r.normal())
}

/// `sign * (0.1 + |u|)`, u ~ N(0,1): never within 0.1 of zero (relu, abs, div denominators,
/// norms).
pub fn away_from_zero(shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
    tensor_with(shape, rng, away_from_zero_value)
}

pub fn away_from_zero_value(r: &mut Rng) -> f64 {
    let u = r.normal();
    let s = if r.uniform() < 0.5 { -1.0 } else { 1.0 };
    s * (0.1 + u.abs())
}

/// Values in [lo, lo + width) (log, sqrt, powf bases).
pub fn uniform_in(shape: &[usize], rng: &mut Rng, lo: f64, width: f64) -> Tensor<f64> {
    tensor_with(shape, rng, |r| lo + width * r.uniform())
}

/// Values `t ± (0.1 + |u|)`: at least 0.1 from the threshold `t` (clamp_min).
pub fn away_from(shape: &[usize], rng: &mut Rng, t: f64) -> Tensor<f64> {
    tensor_with(shape, rng, |r| t + away_from_zero_value(r))
}

/// Pairwise-distinct values: a random permutation of `0.1 * (i - n/2)` plus noise in
/// (-0.02, 0.02), so every pooling window / reduced row has one maximum, 0.06 ahead of the rest.
pub fn distinct(shape: &[usize], rng: &mut Rng) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let mut v: Vec<f64> = (0..n).map(|i| 0.1 * (i as f64 - n as f64 / 2.0)).collect();
    rng.shuffle(&mut v);
    for x in &mut v {
        *x += 0.04 * (rng.uniform() - 0.5);
    }
    Tensor::from_vec(v, shape, Device::Cpu).expect("distinct: valid shape")
}

/// Random class targets in 0..classes.
pub fn targets(n: usize, classes: usize, rng: &mut Rng) -> Vec<usize> {
    (0..n).map(|_| rng.below(classes)).collect()
}

/// A random upstream gradient (N(0,1)) for an output of `shape`, from `seed`.
pub fn upstream(shape: &[usize], seed: u64) -> Tensor<f64> {
    normal(shape, &mut Rng::new(seed ^ 0x005E_ED0F_u64.rotate_left(17)))
}

/// An f32 copy of an f64 tensor (for f32 checks built from the same generators).
pub fn to_f32(t: &Tensor<f64>) -> Tensor<f32> {
    let v = t.to_vec().expect("host tensor").into_iter().map(|x| x as f32).collect();
    Tensor::from_vec(v, t.shape(), Device::Cpu).expect("same shape")
}

/// Row-major flat index of `idx` in `shape`.
pub fn flat(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &s)| acc * s + i)
}

/// Max |a - b| <= atol + rtol * |b| elementwise; Err with the first offending position.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: length {} != expected {}", got.len(), want.len()));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= atol + rtol * w.abs() || (g.is_nan() && w.is_nan());
        if !ok {
            return Err(format!(
                "{what}: element {i}: got {g}, expected {w} (|diff| {:e})",
                (g - w).abs()
            ));
        }
    }
    Ok(())
}
