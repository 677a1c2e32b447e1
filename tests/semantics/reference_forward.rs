//! Forward of conv2d, max_pool2d, avg_pool2d and adaptive_avg_pool2d against naive
//! direct-loop references written here (no im2col), over random asymmetric parameters.

use crate::common::*;
use proptest::prelude::*;
use smallgrad::{Rng, Tensor};

const CASES: u32 = 256;

/// x[n][c][i][j] with zero (None) outside the image.
fn at(x: &[f64], s: &[usize], n: usize, c: usize, i: isize, j: isize) -> Option<f64> {
    if i < 0 || j < 0 || i as usize >= s[2] || j as usize >= s[3] {
        return None;
    }
    Some(x[flat(&[n, c, i as usize, j as usize], s)])
}

fn naive_conv(
    x: &[f64],
    xs: &[usize],
    w: &[f64],
    ws: &[usize],
    b: Option<&[f64]>,
    st: (usize, usize),
    pad: (usize, usize),
) -> (Vec<f64>, Vec<usize>) {
    let (oh, ow) = (
        (xs[2] + 2 * pad.0 - ws[2]) / st.0 + 1,
        (xs[3] + 2 * pad.1 - ws[3]) / st.1 + 1,
    );
    let mut out = Vec::new();
    for n in 0..xs[0] {
        for o in 0..ws[0] {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[o]);
                    for c in 0..xs[1] {
                        for ki in 0..ws[2] {
                            for kj in 0..ws[3] {
                                let r = (i * st.0 + ki) as isize - pad.0 as isize;
                                let q = (j * st.1 + kj) as isize - pad.1 as isize;
                                if let Some(v) = at(x, xs, n, c, r, q) {
                                    acc += v * w[flat(&[o, c, ki, kj], ws)];
                                }
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    (out, vec![xs[0], ws[0], oh, ow])
}

/// Max (or mean with the padded count kh*kw, PyTorch's count_include_pad) over each window.
fn naive_pool(x: &[f64], xs: &[usize], c: &PoolCase, max: bool) -> Vec<f64> {
    let (oh, ow) = c.out_hw();
    let mut out = Vec::new();
    for n in 0..xs[0] {
        for ch in 0..xs[1] {
            for i in 0..oh {
                for j in 0..ow {
                    let mut m = f64::NEG_INFINITY;
                    let mut s = 0.0;
                    for ki in 0..c.kh {
                        for kj in 0..c.kw {
                            let r = (i * c.sh + ki) as isize - c.ph as isize;
                            let q = (j * c.sw + kj) as isize - c.pw as isize;
                            if let Some(v) = at(x, xs, n, ch, r, q) {
                                m = m.max(v);
                                s += v;
                            }
                        }
                    }
                    out.push(if max { m } else { s / (c.kh * c.kw) as f64 });
                }
            }
        }
    }
    out
}

/// Window i of an adaptive pool: [floor(i*L/o), ceil((i+1)*L/o)).
fn adaptive_window(i: usize, len: usize, o: usize) -> (usize, usize) {
    (i * len / o, ((i + 1) * len).div_ceil(o))
}

fn naive_adaptive(x: &[f64], xs: &[usize], oh: usize, ow: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for n in 0..xs[0] {
        for c in 0..xs[1] {
            for i in 0..oh {
                for j in 0..ow {
                    let (h0, h1) = adaptive_window(i, xs[2], oh);
                    let (w0, w1) = adaptive_window(j, xs[3], ow);
                    let mut s = 0.0;
                    for r in h0..h1 {
                        for q in w0..w1 {
                            s += x[flat(&[n, c, r, q], xs)];
                        }
                    }
                    out.push(s / ((h1 - h0) * (w1 - w0)) as f64);
                }
            }
        }
    }
    out
}

fn close(what: &str, got: &Tensor<f64>, want: &[f64], shape: &[usize]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), shape, "{} shape", what);
    assert_close(what, &got.to_vec().unwrap(), want, 1e-12, 1e-10).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn conv2d_matches_direct_loops(c in conv_case(400)) {
        let mut rng = Rng::new(c.seed);
        let x = normal(&c.input_shape(), &mut rng);
        let w = normal(&c.weight_shape(), &mut rng);
        let b = normal(&[c.c_out], &mut rng);
        let bias = if c.bias { Some(&b) } else { None };
        let got = x.conv2d(&w, bias, (c.sh, c.sw), (c.ph, c.pw)).unwrap();
        let bv = b.to_vec().unwrap();
        let (want, shape) = naive_conv(&x.to_vec().unwrap(), x.shape(), &w.to_vec().unwrap(), w.shape(), c.bias.then_some(&bv[..]), (c.sh, c.sw), (c.ph, c.pw));
        close("conv2d", &got, &want, &shape)?;
    }

    /// f32 conv against the f64 reference (tolerance for f32 rounding of short sums).
    #[test]
    fn conv2d_f32_matches_direct_loops(c in conv_case(400)) {
        let mut rng = Rng::new(c.seed);
        let x = normal(&c.input_shape(), &mut rng);
        let w = normal(&c.weight_shape(), &mut rng);
        let got = to_f32(&x).conv2d(&to_f32(&w), None, (c.sh, c.sw), (c.ph, c.pw)).unwrap();
        let (want, shape) = naive_conv(&x.to_vec().unwrap(), x.shape(), &w.to_vec().unwrap(), w.shape(), None, (c.sh, c.sw), (c.ph, c.pw));
        prop_assert_eq!(got.shape(), &shape[..]);
        let got: Vec<f64> = got.to_vec().unwrap().into_iter().map(f64::from).collect();
        assert_close("conv2d f32", &got, &want, 1e-4, 1e-4).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn max_pool2d_matches_direct_loops(c in pool_case()) {
        let x = normal(&c.input_shape(), &mut Rng::new(c.seed));
        let got = x.max_pool2d((c.kh, c.kw), (c.sh, c.sw), (c.ph, c.pw)).unwrap();
        let (oh, ow) = c.out_hw();
        close("max_pool2d", &got, &naive_pool(&x.to_vec().unwrap(), x.shape(), &c, true), &[c.n, c.c, oh, ow])?;
    }

    #[test]
    fn avg_pool2d_matches_direct_loops(c in pool_case()) {
        let x = normal(&c.input_shape(), &mut Rng::new(c.seed));
        let got = x.avg_pool2d((c.kh, c.kw), (c.sh, c.sw), (c.ph, c.pw)).unwrap();
        let (oh, ow) = c.out_hw();
        close("avg_pool2d", &got, &naive_pool(&x.to_vec().unwrap(), x.shape(), &c, false), &[c.n, c.c, oh, ow])?;
    }

    #[test]
    fn adaptive_avg_pool2d_matches_direct_loops(c in adaptive_case()) {
        let x = normal(&[c.n, c.c, c.h, c.w], &mut Rng::new(c.seed));
        let got = x.adaptive_avg_pool2d((c.oh, c.ow)).unwrap();
        close("adaptive_avg_pool2d", &got, &naive_adaptive(&x.to_vec().unwrap(), x.shape(), c.oh, c.ow), &[c.n, c.c, c.oh, c.ow])?;
    }
}

/// A named case: 5 -> 3 does not divide, windows [0,2) [1,4) [3,5) overlap.
#[test]
fn adaptive_avg_pool_non_dividing_named() {
    let x = Tensor::<f64>::from_vec((0..5).map(f64::from).collect(), &[1, 1, 1, 5], smallgrad::Device::Cpu).unwrap();
    let y = x.adaptive_avg_pool2d((1, 3)).unwrap().to_vec().unwrap();
    assert_eq!(y, vec![0.5, 2.0, 3.5]);
}
