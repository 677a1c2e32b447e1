//! gradcheck (f64) of conv2d with and without bias over random asymmetric
//! kernel / stride / padding (each chosen per axis).

use crate::common::*;
use proptest::prelude::*;
use smallgrad::Rng;

const CASES: u32 = 256;

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn conv2d(c in conv_case(300)) {
        let mut rng = Rng::new(c.seed);
        let x = normal(&c.input_shape(), &mut rng);
        let w = normal(&c.weight_shape(), &mut rng);
        let stride = (c.sh, c.sw);
        let padding = (c.ph, c.pw);
        if c.bias {
            let b = normal(&[c.c_out], &mut rng);
            check_grad("conv2d+bias", |xs| xs[0].conv2d(&xs[1], Some(&xs[2]), stride, padding), &[x, w, b], c.seed)?;
        } else {
            check_grad("conv2d", |xs| xs[0].conv2d(&xs[1], None, stride, padding), &[x, w], c.seed)?;
        }
    }

    /// Small cases only, so the full Jacobian (not fast mode) is checked.
    #[test]
    fn conv2d_full_jacobian(c in conv_case(60)) {
        let mut rng = Rng::new(c.seed);
        let x = normal(&c.input_shape(), &mut rng);
        let w = normal(&c.weight_shape(), &mut rng);
        let b = normal(&[c.c_out], &mut rng);
        check_grad("conv2d(small)", |xs| xs[0].conv2d(&xs[1], Some(&xs[2]), (c.sh, c.sw), (c.ph, c.pw)), &[x, w, b], c.seed)?;
    }
}
