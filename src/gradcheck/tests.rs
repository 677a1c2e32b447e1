//! Tests of the gradient checker: correct ops pass in both modes, and wrong gradients,
//! non-determinism and bad options are caught with useful reports.

use super::*;
use crate::autograd::{Backward, record};
use std::cell::Cell;

fn t(data: &[f64], shape: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(data.to_vec(), shape, Device::Cpu).unwrap()
}

fn randn(shape: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(shape, seed, Device::Cpu).unwrap()
}

fn full() -> GradcheckOptions {
    GradcheckOptions::default()
}

fn fast() -> GradcheckOptions {
    GradcheckOptions {
        fast_mode: true,
        seed: 7,
        ..GradcheckOptions::default()
    }
}

#[test]
fn broadcast_mul_passes_and_reports_every_input() {
    let (a, b) = (randn(&[2, 3], 1), randn(&[3], 2));
    let r = gradcheck(|x| x[0].mul(&x[1]), &[a.clone(), b.clone()], &full()).unwrap();
    assert_eq!(r.inputs.len(), 2);
    assert_eq!(r.output_shape, vec![2, 3]);
    assert_eq!(r.inputs[0].checked, 36);
    assert_eq!(r.inputs[1].checked, 18);
    assert!(
        r.inputs
            .iter()
            .all(|i| i.worst_ratio <= 1.0 && !i.fast_mode && i.worst_element.is_some())
    );
    // 6 analytic rows + 3 structural backward; 1 + 3 + 6 + 2 * (6 + 3) forwards.
    assert_eq!(r.backward_calls, 9);
    assert_eq!(r.forward_calls, 1 + 3 + 6 + 18);
    // The caller's tensors are untouched.
    assert!(!a.is_requires_grad() && a.grad().is_none() && !b.is_requires_grad());
    let shown = r.to_string();
    assert!(
        shown.contains("gradcheck passed") && shown.contains("[2, 3]"),
        "{shown}"
    );
}

#[test]
fn unary_and_reductions_pass_in_both_modes() {
    let x = randn(&[3, 4], 3);
    let pos = t(&[0.5, 1.5, 2.0, 3.0, 0.7, 1.1], &[2, 3]);
    type F = fn(&[Tensor<f64>]) -> Result<Tensor<f64>>;
    let cases: Vec<(F, &Tensor<f64>)> = vec![
        (|x| x[0].tanh()?.sum(), &x),
        (|x| x[0].tanh(), &x),
        (|x| x[0].sum_dim(&[1], false), &x),
        (|x| x[0].sigmoid()?.mul(&x[0])?.mean_dim(&[0], true), &x),
        (|x| x[0].exp()?.transpose(0, 1), &x),
        (|x| x[0].log()?.add(&x[0].sqrt()?)?.powf(1.5), &pos),
        (|x| x[0].div(&x[0].sum_dim(&[1], true)?), &pos),
    ];
    for (i, (f, x)) in cases.into_iter().enumerate() {
        for o in [full(), fast()] {
            let r = gradcheck(f, std::slice::from_ref(x), &o);
            assert!(r.is_ok(), "case {i}, fast {}: {}", o.fast_mode, r.unwrap_err());
        }
    }
}

#[test]
fn fast_mode_on_a_bigger_input() {
    let (a, b) = (randn(&[16, 24], 4), randn(&[24], 5));
    let f = |x: &[Tensor<f64>]| x[0].mul(&x[1])?.tanh()?.mean_dim(&[1], false);
    let r = gradcheck(f, &[a, b], &fast()).unwrap();
    assert!(
        r.inputs
            .iter()
            .all(|i| i.fast_mode && i.checked == FAST_PAIRS && i.worst_direction.is_some())
    );
    assert!(r.backward_calls <= 3 + FAST_PAIRS);
    assert!(r.to_string().contains("direction pair"));
}

#[test]
fn detach_cuts_the_gradient_and_is_caught() {
    let x = t(&[1.0, -2.0, 3.0], &[3]);
    for o in [full(), fast()] {
        let err = gradcheck(|x| x[0].mul(&x[0].detach()), std::slice::from_ref(&x), &o).unwrap_err();
        let Error::Gradcheck { msg } = &err else {
            panic!("wrong kind: {err}")
        };
        assert!(msg.contains("input 0"), "{msg}");
        if o.fast_mode {
            assert!(msg.contains("direction pair"), "{msg}");
        } else {
            // Worst entry: element 2 (analytic 3, numeric 6), factor-of-2 hint.
            assert!(
                msg.contains("element [2]") && msg.contains("output element [2]"),
                "{msg}"
            );
            assert!(msg.contains("3 of 9 Jacobian") && msg.contains("factor of 2"), "{msg}");
        }
    }
}

#[test]
fn unused_input_has_zero_gradient_and_passes() {
    let (a, b) = (randn(&[2], 6), randn(&[3], 7));
    let r = gradcheck(|x| x[0].exp(), &[a.clone(), b.clone()], &full()).unwrap();
    assert_eq!(r.inputs[1].max_abs_err, 0.0);
    // But an input that does matter and gets no gradient fails, with a hint.
    let err = gradcheck(|x| x[0].detach().mul(&x[1].sum()?), &[a, b], &full()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("input 0") && msg.contains("exactly 0"), "{msg}");
}

#[test]
fn errors_of_f_propagate_with_context() {
    let (a, b) = (randn(&[2], 1), randn(&[3], 2));
    let err = gradcheck(|x| x[0].add(&x[1]), &[a, b], &full()).unwrap_err();
    let Error::Shape { op, msg } = &err else {
        panic!("wrong kind: {err}")
    };
    assert_eq!(*op, "add");
    assert!(msg.contains("by f") && msg.contains("gradcheck"), "{msg}");
}

#[test]
fn non_finite_output_and_bad_options_are_errors() {
    let x = t(&[1.0, -1.0], &[2]);
    let msg = gradcheck(|x| x[0].log(), std::slice::from_ref(&x), &full())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not finite") && msg.contains("[1]"), "{msg}");
    let bad = GradcheckOptions { eps: 0.0, ..full() };
    assert!(matches!(
        gradcheck(|x| x[0].exp(), std::slice::from_ref(&x), &bad),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        gradcheck(|x| x[0].exp(), &[], &full()),
        Err(Error::InvalidArgument { .. })
    ));
    let in_no_grad = no_grad(|| gradcheck(|x| x[0].exp(), std::slice::from_ref(&x), &full()));
    assert!(matches!(in_no_grad, Err(Error::InvalidArgument { .. })));
}

#[test]
fn state_kept_between_calls_is_caught_by_the_determinism_check() {
    let calls = Cell::new(0.0);
    let f = |x: &[Tensor<f64>]| {
        calls.set(calls.get() + 1.0);
        x[0].mul_scalar(calls.get())?.sum()
    };
    let msg = gradcheck(f, &[randn(&[3], 1)], &full()).unwrap_err().to_string();
    assert!(msg.contains("input 0") && msg.contains("bit-identical"), "{msg}");
}

/// y = 2x with a backward that adds a constant: not linear in the upstream gradient.
struct AffineBackward;
impl Backward<f64> for AffineBackward {
    fn name(&self) -> &'static str {
        "buggy_double"
    }
    fn backward(&self, g: &Tensor<f64>, inputs: &[Tensor<f64>]) -> Result<Vec<Option<Tensor<f64>>>> {
        Ok(vec![
            inputs[0]
                .is_requires_grad()
                .then(|| g.mul_scalar(2.0)?.add_scalar(1.0))
                .transpose()?,
        ])
    }
}

#[test]
fn a_backward_not_linear_in_its_upstream_gradient_is_caught() {
    let f = |x: &[Tensor<f64>]| {
        let out = no_grad(|| x[0].mul_scalar(2.0))?;
        record(out.detach(), &[&x[0]], AffineBackward)
    };
    let msg = gradcheck(f, &[randn(&[2, 2], 3)], &full()).unwrap_err().to_string();
    assert!(
        msg.contains("zero upstream gradient") && msg.contains("element [0, 0]"),
        "{msg}"
    );
}
