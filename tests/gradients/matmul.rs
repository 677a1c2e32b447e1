//! gradcheck (f64) of matmul: [m,k]x[k,n], batched [b,m,k]x[b,k,n], broadcast rhs [b,m,k]x[k,n].

use crate::common::*;
use proptest::prelude::*;
use smallgrad::Rng;

const CASES: u32 = 256;

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn matmul_2d(m in dim(), k in dim(), n in dim(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let a = normal(&[m, k], &mut rng);
        let b = normal(&[k, n], &mut rng);
        check_grad("matmul 2-D", |xs| xs[0].matmul(&xs[1]), &[a, b], seed)?;
    }

    #[test]
    fn matmul_batched(bt in 1usize..=3, m in dim(), k in dim(), n in dim(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let a = normal(&[bt, m, k], &mut rng);
        let b = normal(&[bt, k, n], &mut rng);
        check_grad("matmul batched", |xs| xs[0].matmul(&xs[1]), &[a, b], seed)?;
    }

    #[test]
    fn matmul_broadcast_rhs(bt in 1usize..=3, m in dim(), k in dim(), n in dim(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let a = normal(&[bt, m, k], &mut rng);
        let b = normal(&[k, n], &mut rng);
        check_grad("matmul broadcast rhs", |xs| xs[0].matmul(&xs[1]), &[a, b], seed)?;
    }

    /// Larger sizes (fast mode), where the GEMM kernel's blocking matters.
    #[test]
    fn matmul_larger(m in 5usize..=17, k in 5usize..=17, n in 5usize..=17, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let a = normal(&[m, k], &mut rng);
        let b = normal(&[k, n], &mut rng);
        check_grad("matmul larger", |xs| xs[0].matmul(&xs[1]), &[a, b], seed)?;
    }
}
