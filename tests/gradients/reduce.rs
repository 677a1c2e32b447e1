//! gradcheck (f64) of every reduction: sum, mean, sum_dim / mean_dim over random dim sets with
//! keepdim both ways, max_dim (distinct values), sum_to, norm_dim (norms >= 0.1).

use crate::common::*;
use proptest::prelude::*;
use smallgrad::Rng;

const CASES: u32 = 256;

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn sum(s in shape(1, 4, 150), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("sum", |xs| xs[0].sum(), &[x], seed)?;
    }

    #[test]
    fn mean(s in shape(1, 4, 150), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("mean", |xs| xs[0].mean(), &[x], seed)?;
    }

    #[test]
    fn sum_dim((s, dims) in shape_and_dims(4, 150), keepdim in any::<bool>(), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("sum_dim", |xs| xs[0].sum_dim(&dims, keepdim), &[x], seed)?;
    }

    #[test]
    fn mean_dim((s, dims) in shape_and_dims(4, 150), keepdim in any::<bool>(), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("mean_dim", |xs| xs[0].mean_dim(&dims, keepdim), &[x], seed)?;
    }

    #[test]
    fn max_dim((s, d) in shape_and_dim(4, 150), keepdim in any::<bool>(), seed in any::<u64>()) {
        let x = distinct(&s, &mut Rng::new(seed));
        check_grad("max_dim", |xs| xs[0].max_dim(d, keepdim), &[x], seed)?;
    }

    #[test]
    fn sum_to((big, small) in reducible_pair(4), seed in any::<u64>()) {
        let x = normal(&big, &mut Rng::new(seed));
        check_grad("sum_to", |xs| xs[0].sum_to(&small), &[x], seed)?;
    }

    #[test]
    fn norm_dim((s, d) in shape_and_dim(4, 150), keepdim in any::<bool>(), seed in any::<u64>()) {
        let x = away_from_zero(&s, &mut Rng::new(seed));
        check_grad("norm_dim", |xs| xs[0].norm_dim(d, keepdim), &[x], seed)?;
    }
}
