//! gradcheck (f64) of batch_norm: training mode (batch statistics) with and without affine
//! parameters and running statistics, and eval mode (running statistics). The running
//! statistics are buffers, not checked inputs: each call of the checked function gets fresh
//! copies, so the in-place updates of training mode never leak between calls.

use crate::common::*;
use proptest::prelude::*;
use smallgrad::{Device, Rng, Tensor};

const CASES: u32 = 256;

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn batch_norm(c in bn_case()) {
        let mut rng = Rng::new(c.seed);
        // Spaced values: the batch variance is never tiny.
        let x = distinct(&c.shape, &mut rng);
        let ch = c.channels();
        let rm: Vec<f64> = (0..ch).map(|_| rng.normal()).collect();
        let rv: Vec<f64> = (0..ch).map(|_| 0.5 + rng.uniform()).collect();
        let fresh = |v: &Vec<f64>| Tensor::from_vec(v.clone(), &[ch], Device::Cpu);
        let (training, momentum, running) = (c.training, c.momentum, c.running);
        let op = |xs: &[Tensor<f64>]| {
            let (m, v) = if running { (Some(fresh(&rm)?), Some(fresh(&rv)?)) } else { (None, None) };
            let (w, b) = if xs.len() == 3 { (Some(&xs[1]), Some(&xs[2])) } else { (None, None) };
            xs[0].batch_norm(m.as_ref(), v.as_ref(), w, b, training, momentum, 1e-5)
        };
        if c.affine {
            let w = normal(&[ch], &mut rng);
            let b = normal(&[ch], &mut rng);
            check_grad("batch_norm(affine)", op, &[x, w, b], c.seed)?;
        } else {
            check_grad("batch_norm", op, &[x], c.seed)?;
        }
    }
}
