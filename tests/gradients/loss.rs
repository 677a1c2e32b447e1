//! gradcheck (f64) of cross_entropy and CosineLoss with all three reductions.

use crate::common::*;
use proptest::prelude::*;
use smallgrad::Rng;
use smallgrad::loss::{CosineLoss, Reduction, cross_entropy};

const CASES: u32 = 256;

fn reduction() -> impl Strategy<Value = Reduction> {
    prop::sample::select(vec![Reduction::Mean, Reduction::Sum, Reduction::None])
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn cross_entropy_grad(n in 1usize..=6, c in 1usize..=7, r in reduction(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let x = normal(&[n, c], &mut rng).mul_scalar(2.0).unwrap();
        let t = targets(n, c, &mut rng);
        check_grad("cross_entropy", |xs| cross_entropy(&xs[0], &t, r), &[x], seed)?;
    }

    #[test]
    fn cosine_loss_grad(
        n in 1usize..=6,
        c in 1usize..=7,
        r in reduction(),
        xent in prop::sample::select(vec![0.1, 0.0, 1.0, 2.5]),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let x = away_from_zero(&[n, c], &mut rng);
        let t = targets(n, c, &mut rng);
        let loss = CosineLoss { xent, reduction: r };
        check_grad("CosineLoss", |xs| loss.forward(&xs[0], &t), &[x], seed)?;
    }

    /// The default module (xent 0.1, Mean), as the seed post uses it.
    #[test]
    fn cosine_loss_default(n in 1usize..=6, c in 2usize..=7, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let x = away_from_zero(&[n, c], &mut rng);
        let t = targets(n, c, &mut rng);
        check_grad("CosineLoss::default", |xs| CosineLoss::default().forward(&xs[0], &t), &[x], seed)?;
    }
}
