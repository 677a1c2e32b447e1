//! gradcheck (f64) of max_pool2d (distinct values in every window), avg_pool2d (count
//! includes padding) and adaptive_avg_pool2d (output sizes that need not divide the input).

use crate::common::*;
use proptest::prelude::*;
use smallgrad::Rng;

const CASES: u32 = 256;

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn max_pool2d(c in pool_case()) {
        let x = distinct(&c.input_shape(), &mut Rng::new(c.seed));
        check_grad("max_pool2d", |xs| xs[0].max_pool2d((c.kh, c.kw), (c.sh, c.sw), (c.ph, c.pw)), &[x], c.seed)?;
    }

    #[test]
    fn avg_pool2d(c in pool_case()) {
        let x = normal(&c.input_shape(), &mut Rng::new(c.seed));
        check_grad("avg_pool2d", |xs| xs[0].avg_pool2d((c.kh, c.kw), (c.sh, c.sw), (c.ph, c.pw)), &[x], c.seed)?;
    }

    #[test]
    fn adaptive_avg_pool2d(c in adaptive_case()) {
        let x = normal(&[c.n, c.c, c.h, c.w], &mut Rng::new(c.seed));
        check_grad("adaptive_avg_pool2d", |xs| xs[0].adaptive_avg_pool2d((c.oh, c.ow)), &[x], c.seed)?;
    }

    /// Global average pooling (output size 1), as a ResNet head uses it.
    #[test]
    fn global_avg_pool(n in 1usize..=2, ch in 1usize..=3, h in 1usize..=7, w in 1usize..=7, seed in any::<u64>()) {
        let x = normal(&[n, ch, h, w], &mut Rng::new(seed));
        check_grad("adaptive_avg_pool2d(1)", |xs| xs[0].adaptive_avg_pool2d(1), &[x], seed)?;
    }
}
