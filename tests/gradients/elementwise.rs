//! gradcheck (f64) of every elementwise op; binary ops over random broadcasting shape pairs.
//! Inputs stay away from each op's kinks and domain edges (see `common::strategies`).

use crate::common::*;
use proptest::prelude::*;
use smallgrad::{Rng, Tensor};

const CASES: u32 = 256;

fn binary(name: &str, a: &[usize], b: &[usize], seed: u64, denominator: bool) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(seed);
    let x = normal(a, &mut rng);
    let y = if denominator {
        away_from_zero(b, &mut rng)
    } else {
        normal(b, &mut rng)
    };
    let op = |xs: &[Tensor<f64>]| match name {
        "add" => xs[0].add(&xs[1]),
        "sub" => xs[0].sub(&xs[1]),
        "mul" => xs[0].mul(&xs[1]),
        "div" => xs[0].div(&xs[1]),
        _ => unreachable!(),
    };
    check_grad(name, op, &[x, y], seed)
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn add((a, b) in broadcast_pair(4), seed in any::<u64>()) { binary("add", &a, &b, seed, false)?; }

    #[test]
    fn sub((a, b) in broadcast_pair(4), seed in any::<u64>()) { binary("sub", &a, &b, seed, false)?; }

    #[test]
    fn mul((a, b) in broadcast_pair(4), seed in any::<u64>()) { binary("mul", &a, &b, seed, false)?; }

    #[test]
    fn div((a, b) in broadcast_pair(4), seed in any::<u64>()) { binary("div", &a, &b, seed, true)?; }

    /// The same tensor on both sides of a binary op (a reused input).
    #[test]
    fn mul_self(s in shape(1, 4, 120), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("x*x", |xs| xs[0].mul(&xs[0]), &[x], seed)?;
    }

    #[test]
    fn add_scalar(s in shape(1, 4, 120), c in -3.0f64..3.0, seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("add_scalar", |xs| xs[0].add_scalar(c), &[x], seed)?;
    }

    #[test]
    fn mul_scalar(s in shape(1, 4, 120), c in -3.0f64..3.0, seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("mul_scalar", |xs| xs[0].mul_scalar(c), &[x], seed)?;
    }

    #[test]
    fn neg(s in shape(1, 4, 120), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("neg", |xs| xs[0].neg(), &[x], seed)?;
    }

    #[test]
    fn exp(s in shape(1, 4, 120), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("exp", |xs| xs[0].exp(), &[x], seed)?;
    }

    #[test]
    fn log(s in shape(1, 4, 120), seed in any::<u64>()) {
        let x = uniform_in(&s, &mut Rng::new(seed), 0.2, 3.0);
        check_grad("log", |xs| xs[0].log(), &[x], seed)?;
    }

    #[test]
    fn sqrt(s in shape(1, 4, 120), seed in any::<u64>()) {
        let x = uniform_in(&s, &mut Rng::new(seed), 0.2, 3.0);
        check_grad("sqrt", |xs| xs[0].sqrt(), &[x], seed)?;
    }

    #[test]
    fn abs(s in shape(1, 4, 120), seed in any::<u64>()) {
        let x = away_from_zero(&s, &mut Rng::new(seed));
        check_grad("abs", |xs| xs[0].abs(), &[x], seed)?;
    }

    #[test]
    fn relu(s in shape(1, 4, 120), seed in any::<u64>()) {
        let x = away_from_zero(&s, &mut Rng::new(seed));
        check_grad("relu", |xs| xs[0].relu(), &[x], seed)?;
    }

    #[test]
    fn tanh(s in shape(1, 4, 120), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("tanh", |xs| xs[0].tanh(), &[x], seed)?;
    }

    #[test]
    fn sigmoid(s in shape(1, 4, 120), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed)).mul_scalar(2.0).unwrap();
        check_grad("sigmoid", |xs| xs[0].sigmoid(), &[x], seed)?;
    }

    #[test]
    fn powf(
        s in shape(1, 4, 120),
        p in prop::sample::select(vec![2.0, 3.0, 0.5, -1.0, -1.5, 1.7]),
        seed in any::<u64>(),
    ) {
        let x = uniform_in(&s, &mut Rng::new(seed), 0.3, 2.5);
        check_grad("powf", |xs| xs[0].powf(p), &[x], seed)?;
    }

    #[test]
    fn clamp_min(s in shape(1, 4, 120), t in -1.5f64..1.5, seed in any::<u64>()) {
        let x = away_from(&s, &mut Rng::new(seed), t);
        check_grad("clamp_min", |xs| xs[0].clamp_min(t), &[x], seed)?;
    }

    /// A chain of ops with a broadcast in the middle (composition through the engine).
    #[test]
    fn chain((a, b) in broadcast_pair(3), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let x = normal(&a, &mut rng);
        let y = normal(&b, &mut rng);
        check_grad(
            "chain",
            |xs| xs[0].tanh()?.mul(&xs[1])?.add(&xs[0].sigmoid()?)?.exp(),
            &[x, y],
            seed,
        )?;
    }

    /// A diamond: an intermediate node consumed by two paths of different depth, so the
    /// engine must finish summing its gradient before running its backward.
    #[test]
    fn diamond(s in shape(1, 3, 60), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("diamond", |xs| { let h = xs[0].sigmoid()?; h.tanh()?.exp()?.add(&h) }, &[x], seed)?;
    }
}
