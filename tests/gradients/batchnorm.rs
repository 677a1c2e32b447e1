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

/// `relu(batch_norm(x) + residual)`'s inputs at a point where no ReLU input is within 0.1 of
/// its kink: the residual is `a - bn(x)` with `a` away from zero, so the pre-activation is `a`.
/// Returns (inputs, the op) for the case's affine / training / running settings.
type Op = Box<dyn Fn(&[Tensor<f64>]) -> smallgrad::Result<Tensor<f64>>>;
fn fused_case(c: &BnCase) -> (Vec<Tensor<f64>>, Op) {
    let mut rng = Rng::new(c.seed);
    let x = distinct(&c.shape, &mut rng);
    let ch = c.channels();
    let rm: Vec<f64> = (0..ch).map(|_| rng.normal()).collect();
    let rv: Vec<f64> = (0..ch).map(|_| 0.5 + rng.uniform()).collect();
    let (training, momentum, running, affine) = (c.training, c.momentum, c.running, c.affine);
    let stats = move || -> smallgrad::Result<_> {
        let fresh = |v: &Vec<f64>| Tensor::from_vec(v.clone(), &[ch], Device::Cpu);
        Ok(if running || !training {
            (Some(fresh(&rm)?), Some(fresh(&rv)?))
        } else {
            (None, None)
        })
    };
    let mut inputs = vec![x];
    if affine {
        inputs.push(normal(&[ch], &mut rng));
        inputs.push(normal(&[ch], &mut rng));
    }
    let z0 = {
        let (m, v) = stats().unwrap();
        let (w, b) = if affine {
            (Some(&inputs[1]), Some(&inputs[2]))
        } else {
            (None, None)
        };
        inputs[0]
            .batch_norm(m.as_ref(), v.as_ref(), w, b, training, momentum, 1e-5)
            .unwrap()
    };
    let a = away_from_zero(&c.shape, &mut rng);
    inputs.push(a.sub(&z0).unwrap());
    let op: Op = Box::new(move |xs: &[Tensor<f64>]| {
        let (m, v) = stats()?;
        let (w, b) = if xs.len() == 4 {
            (Some(&xs[1]), Some(&xs[2]))
        } else {
            (None, None)
        };
        let r = xs.last();
        xs[0].batch_norm_relu(m.as_ref(), v.as_ref(), w, b, r, training, momentum, 1e-5)
    });
    (inputs, op)
}

proptest! {
    #![proptest_config(config(CASES))]

    /// The fused batch norm + residual add + ReLU against finite differences, in training mode
    /// (batch statistics) and eval mode, with and without affine parameters.
    #[test]
    fn batch_norm_relu_with_residual(c in bn_case()) {
        let (inputs, op) = fused_case(&c);
        check_grad("batch_norm_relu", op, &inputs, c.seed)?;
    }

    /// The fused op, with and without a residual, gives the values and gradients of the three
    /// ops it fuses (`batch_norm`, `add`, `relu`, each gradchecked on its own), to rounding.
    #[test]
    fn batch_norm_relu_equals_its_three_ops(c in bn_case(), with_residual in any::<bool>()) {
        let (inputs, _) = fused_case(&c);
        let ch = c.channels();
        let run = |fused: bool| -> smallgrad::Result<Vec<Vec<f64>>> {
            let xs: Vec<Tensor<f64>> = inputs.iter().map(|t| t.detach().requires_grad()).collect();
            let rm = Tensor::<f64>::full(&[ch], 0.3, Device::Cpu)?;
            let rv = Tensor::<f64>::full(&[ch], 1.7, Device::Cpu)?;
            let (w, b) = if c.affine { (Some(&xs[1]), Some(&xs[2])) } else { (None, None) };
            let r = with_residual.then(|| xs.last().unwrap());
            let y = if fused {
                xs[0].batch_norm_relu(Some(&rm), Some(&rv), w, b, r, c.training, c.momentum, 1e-5)?
            } else {
                let z = xs[0].batch_norm(Some(&rm), Some(&rv), w, b, c.training, c.momentum, 1e-5)?;
                match r { Some(r) => z.add(r)?, None => z }.relu()?
            };
            y.mul(&upstream(y.shape(), c.seed))?.sum()?.backward()?;
            let mut out = vec![y.to_vec()?, rm.to_vec()?, rv.to_vec()?];
            for t in &xs {
                out.push(t.grad().map(|g| g.to_vec()).transpose()?.unwrap_or_default());
            }
            Ok(out)
        };
        let (fused, composed) = (run(true).unwrap(), run(false).unwrap());
        for (i, (f, s)) in fused.iter().zip(&composed).enumerate() {
            prop_assert_eq!(f.len(), s.len());
            for (a, b) in f.iter().zip(s) {
                prop_assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "part {} of {:?}: {} vs {}", i, c.shape, a, b);
            }
        }
    }
}
