//! gradcheck (f64) of softmax / log_softmax on every dim, and of normalize /
//! cosine_similarity along every dim (norms >= 0.1, far above the eps clamps).

use crate::common::*;
use proptest::prelude::*;
use smallgrad::Rng;

const CASES: u32 = 256;

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn softmax((s, d) in shape_and_dim(4, 150), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed)).mul_scalar(2.0).unwrap();
        check_grad("softmax", |xs| xs[0].softmax(d), &[x], seed)?;
    }

    #[test]
    fn log_softmax((s, d) in shape_and_dim(4, 150), seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed)).mul_scalar(2.0).unwrap();
        check_grad("log_softmax", |xs| xs[0].log_softmax(d), &[x], seed)?;
    }

    /// Large logits: the stable (max-subtracted) forward must still give right gradients.
    #[test]
    fn log_softmax_shifted((s, d) in shape_and_dim(3, 100), shift in -300.0f64..300.0, seed in any::<u64>()) {
        let x = normal(&s, &mut Rng::new(seed)).add_scalar(shift).unwrap();
        check_grad("log_softmax(shifted)", |xs| xs[0].log_softmax(d), &[x], seed)?;
    }

    #[test]
    fn normalize((s, d) in shape_and_dim(4, 150), seed in any::<u64>()) {
        let x = away_from_zero(&s, &mut Rng::new(seed));
        check_grad("normalize", |xs| xs[0].normalize(d, 1e-12), &[x], seed)?;
    }

    #[test]
    fn cosine_similarity((s, d) in shape_and_dim(4, 150), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let a = away_from_zero(&s, &mut rng);
        let b = away_from_zero(&s, &mut rng);
        check_grad("cosine_similarity", |xs| xs[0].cosine_similarity(&xs[1], d, 1e-8), &[a, b], seed)?;
    }

    /// cosine_similarity broadcasts its two inputs, as PyTorch's does.
    #[test]
    fn cosine_similarity_broadcast((a, b) in broadcast_pair(3), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let rank = a.len().max(b.len());
        let x = away_from_zero(&a, &mut rng);
        let y = away_from_zero(&b, &mut rng);
        let d = (seed as usize) % rank;
        check_grad("cosine_similarity(broadcast)", |xs| xs[0].cosine_similarity(&xs[1], d, 1e-8), &[x, y], seed)?;
    }
}
