//! gradcheck (f64) of the shape ops: reshape, flatten, permute, transpose, expand.

use crate::common::*;
use proptest::prelude::*;
use smallgrad::Rng;

const CASES: u32 = 256;

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn reshape((from, to) in reshape_pair(4, 150), seed in any::<u64>()) {
        let x = normal(&from, &mut Rng::new(seed));
        check_grad("reshape", |xs| xs[0].reshape(&to), &[x], seed)?;
    }

    #[test]
    fn flatten((s, d) in shape_and_dim(4, 150), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("flatten", |xs| xs[0].flatten(d), &[x], seed)?;
    }

    #[test]
    fn permute((s, perm) in shape_and_perm(4, 150), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("permute", |xs| xs[0].permute(&perm), &[x], seed)?;
    }

    #[test]
    fn transpose((s, d0) in shape_and_dim(4, 150), d1 in 0usize..4, seed in any::<u64>()) {
        let d1 = d1 % s.len();
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("transpose", |xs| xs[0].transpose(d0, d1), &[x], seed)?;
    }

    #[test]
    fn expand((big, small) in reducible_pair(4), seed in any::<u64>()) {
        let x = normal(&small, &mut Rng::new(seed));
        check_grad("expand", |xs| xs[0].expand(&big), &[x], seed)?;
    }

    /// A non-contiguous-looking chain: permute then reshape then transpose back.
    #[test]
    fn permute_reshape((s, perm) in shape_and_perm(4, 150), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed));
        check_grad("permute+flatten", |xs| xs[0].permute(&perm)?.flatten(0)?.exp(), &[x], seed)?;
    }
}
