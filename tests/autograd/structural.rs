//! Structural autograd properties: accumulation over passes, zero_grad, no_grad, inputs
//! without requires_grad, second backward through a freed graph, retain_grad, reused nodes
//! (x*x, a+a, diamonds) against hand formulas.

use smallgrad::{Device, Tensor, no_grad};

fn t(v: &[f64], s: &[usize]) -> Tensor<f64> {
    Tensor::from_vec(v.to_vec(), s, Device::Cpu).unwrap()
}

fn grad(x: &Tensor<f64>) -> Vec<f64> {
    x.grad().expect("gradient present").to_vec().unwrap()
}

fn approx(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
            "element {i}: {x} vs {y} ({a:?} vs {b:?})"
        );
    }
}

fn loss(x: &Tensor<f64>, w: &Tensor<f64>) -> Tensor<f64> {
    x.mul(w).unwrap().tanh().unwrap().sum().unwrap()
}

#[test]
fn grads_accumulate_over_two_passes() {
    let x = t(&[0.3, -1.2, 2.0], &[3]).requires_grad();
    let w = t(&[1.5, 0.5, -0.7], &[3]).requires_grad();
    loss(&x, &w).backward().unwrap();
    let (gx1, gw1) = (grad(&x), grad(&w));
    loss(&x, &w).backward().unwrap();
    approx(&grad(&x), &gx1.iter().map(|g| 2.0 * g).collect::<Vec<_>>());
    approx(&grad(&w), &gw1.iter().map(|g| 2.0 * g).collect::<Vec<_>>());
}

#[test]
fn zero_grad_clears() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad();
    x.mul_scalar(3.0).unwrap().sum().unwrap().backward().unwrap();
    approx(&grad(&x), &[3.0, 3.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    x.mul_scalar(5.0).unwrap().sum().unwrap().backward().unwrap();
    approx(&grad(&x), &[5.0, 5.0]);
}

#[test]
fn no_grad_records_nothing() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad();
    let y = no_grad(|| x.exp().unwrap().mul(&x).unwrap().sum().unwrap());
    assert!(!y.is_requires_grad());
    assert!(y.is_leaf());
    assert!(y.backward().is_err());
    assert!(x.grad().is_none());
    // Grad mode is back on after no_grad.
    assert!(x.exp().unwrap().is_requires_grad());
}

#[test]
fn inputs_without_requires_grad_get_no_grad() {
    let x = t(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    let c = t(&[4.0, 5.0, 6.0], &[3]);
    x.mul(&c).unwrap().sum().unwrap().backward().unwrap();
    approx(&grad(&x), &[4.0, 5.0, 6.0]);
    assert!(c.grad().is_none());
    assert!(!c.is_requires_grad());
}

#[test]
fn backward_on_constant_errs() {
    let c = t(&[1.0], &[1]);
    assert!(c.exp().unwrap().backward().is_err());
}

#[test]
fn second_backward_through_freed_graph_errs() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad();
    let y = x.exp().unwrap().mul(&x).unwrap().sum().unwrap();
    y.backward().unwrap();
    let g1 = grad(&x);
    assert!(y.backward().is_err());
    // The failed second pass did not touch the gradient.
    approx(&grad(&x), &g1);
    // backward_with on a freed graph too.
    let z = x.tanh().unwrap();
    z.backward_with(&t(&[1.0, 1.0], &[2])).unwrap();
    assert!(z.backward_with(&t(&[1.0, 1.0], &[2])).is_err());
}

#[test]
fn backward_needs_one_element_or_matching_grad() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad();
    let y = x.exp().unwrap();
    assert!(y.backward().is_err());
    assert!(y.backward_with(&t(&[1.0, 1.0, 1.0], &[3])).is_err());
}

#[test]
fn retain_grad_gives_non_leaf_grad() {
    let x = t(&[0.5, -1.0, 2.0], &[3]).requires_grad();
    let h = x.mul_scalar(2.0).unwrap().retain_grad();
    let y = h.mul(&h).unwrap().sum().unwrap(); // y = sum h^2, dy/dh = 2h, dy/dx = 4h
    y.backward().unwrap();
    let hv = h.to_vec().unwrap();
    approx(&grad(&h), &hv.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    approx(&grad(&x), &hv.iter().map(|v| 4.0 * v).collect::<Vec<_>>());
    // A non-leaf without retain_grad has no grad.
    let k = x.exp().unwrap();
    k.sum().unwrap().backward().unwrap();
    assert!(k.grad().is_none());
}

#[test]
fn reused_nodes_match_hand_formulas() {
    let xv = [0.5, -1.5, 2.0];
    // x * x: 2x
    let x = t(&xv, &[3]).requires_grad();
    x.mul(&x).unwrap().sum().unwrap().backward().unwrap();
    approx(&grad(&x), &xv.map(|v| 2.0 * v));
    // a + a: 2
    let a = t(&xv, &[3]).requires_grad();
    a.add(&a).unwrap().sum().unwrap().backward().unwrap();
    approx(&grad(&a), &[2.0; 3]);
    // Diamond: h = exp(x); y = h*sin-free mix: y = sum(h * tanh(h) + h): dy/dx = (tanh h + h (1 - tanh^2 h) + 1) h
    let x = t(&xv, &[3]).requires_grad();
    let h = x.exp().unwrap();
    let y = h.mul(&h.tanh().unwrap()).unwrap().add(&h).unwrap().sum().unwrap();
    y.backward().unwrap();
    let want: Vec<f64> = xv
        .iter()
        .map(|v| {
            let h = v.exp();
            (h.tanh() + h * (1.0 - h.tanh().powi(2)) + 1.0) * h
        })
        .collect();
    approx(&grad(&x), &want);
    // Deeper reuse: y = x*x*x (two nodes sharing x): 3x^2
    let x = t(&xv, &[3]).requires_grad();
    x.mul(&x).unwrap().mul(&x).unwrap().sum().unwrap().backward().unwrap();
    approx(&grad(&x), &xv.map(|v| 3.0 * v * v));
}

#[test]
fn broadcast_grad_sums_back() {
    // y = sum(a[2,3] * b[3]) : da = b broadcast, db = column sums of a.
    let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).requires_grad();
    let b = t(&[0.5, -1.0, 2.0], &[3]).requires_grad();
    a.mul(&b).unwrap().sum().unwrap().backward().unwrap();
    approx(&grad(&a), &[0.5, -1.0, 2.0, 0.5, -1.0, 2.0]);
    approx(&grad(&b), &[5.0, 7.0, 9.0]);
}

#[test]
fn detach_cuts_the_graph() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad();
    let d = x.exp().unwrap().detach();
    assert!(!d.is_requires_grad());
    let y = x.mul(&d).unwrap().sum().unwrap();
    y.backward().unwrap();
    approx(&grad(&x), &[1f64.exp(), 2f64.exp()]);
}

#[test]
fn deep_chain_does_not_overflow_the_stack() {
    let x = t(&[0.1], &[1]).requires_grad();
    let mut y = x.clone();
    for _ in 0..20_000 {
        y = y.mul_scalar(1.0).unwrap();
    }
    y.sum().unwrap().backward().unwrap();
    approx(&grad(&x), &[1.0]);
}
