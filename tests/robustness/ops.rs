//! Invalid input is an `Err`, never a panic: named cases for the creation, elementwise,
//! reduction, shape, softmax, normalize and loss APIs, plus proptests over random (often
//! invalid) shapes and parameters asserting "Err or a correctly shaped Ok" (a panic fails
//! the test).

use crate::strategies::config;
use proptest::prelude::*;
use smallgrad::loss::{CosineLoss, Reduction, cross_entropy};
use smallgrad::{Device, Tensor};

fn t(shape: &[usize]) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|i| i as f64 * 0.1 - 1.0).collect(), shape, Device::Cpu).unwrap()
}

#[test]
fn creation_errors() {
    assert!(Tensor::<f32>::from_vec(vec![1.0; 5], &[2, 3], Device::Cpu).is_err());
    assert!(Tensor::<f32>::one_hot(&[0, 3], 3, Device::Cpu).is_err());
    assert!(Tensor::<f32>::zeros(&[2], Device::Cuda(0)).is_err());
    assert!(Tensor::<f64>::randn(&[2], 1, Device::Cuda(0)).is_err());
    assert!(t(&[2]).to_device(Device::Cuda(0)).is_err());
    assert_eq!(Device::cuda_if_available(0), Device::Cpu);
    assert!(t(&[2]).item().is_err());
    assert!(t(&[]).item().is_ok());
    assert!(t(&[1, 1]).item().is_ok());
}

#[test]
fn elementwise_errors() {
    assert!(t(&[2, 3]).add(&t(&[4])).is_err());
    assert!(t(&[2, 3]).mul(&t(&[3, 2])).is_err());
    assert!(t(&[2, 3]).sub(&t(&[2, 2])).is_err());
    assert!(t(&[2, 3]).div(&t(&[5, 1, 3, 1])).is_err());
    assert_eq!(t(&[2, 3]).div(&t(&[5, 1, 1])).unwrap().shape(), &[5, 2, 3]);
}

#[test]
fn reduction_and_shape_errors() {
    let x = t(&[2, 3, 4]);
    assert!(x.sum_dim(&[3], false).is_err());
    assert!(x.sum_dim(&[1, 1], false).is_err());
    assert!(x.mean_dim(&[5], true).is_err());
    assert!(x.max_dim(3, false).is_err());
    assert!(x.argmax(3).is_err());
    assert!(x.norm_dim(3, false).is_err());
    assert!(x.sum_to(&[3, 3]).is_err());
    assert!(x.sum_to(&[1, 2, 3, 4]).is_err());
    assert!(x.reshape(&[5, 5]).is_err());
    assert!(x.reshape(&[2, 3, 5]).is_err());
    assert!(x.permute(&[0, 1]).is_err());
    assert!(x.permute(&[0, 1, 1]).is_err());
    assert!(x.permute(&[0, 1, 3]).is_err());
    assert!(x.transpose(0, 3).is_err());
    assert!(x.flatten(3).is_err());
    assert!(x.expand(&[2, 5, 4]).is_err());
    assert!(x.expand(&[3, 4]).is_err());
}

#[test]
fn softmax_normalize_errors() {
    let x = t(&[2, 3]);
    assert!(x.softmax(2).is_err());
    assert!(x.log_softmax(7).is_err());
    assert!(x.normalize(2, 1e-12).is_err());
    assert!(x.cosine_similarity(&t(&[2, 4]), 1, 1e-8).is_err());
    assert!(x.cosine_similarity(&t(&[2, 3]), 2, 1e-8).is_err());
}

#[test]
fn loss_errors() {
    let x = t(&[2, 3]);
    assert!(cross_entropy(&x, &[0, 3], Reduction::Mean).is_err());
    assert!(cross_entropy(&x, &[0], Reduction::Mean).is_err());
    assert!(cross_entropy(&x, &[0, 1, 2], Reduction::Sum).is_err());
    assert!(cross_entropy(&t(&[6]), &[0], Reduction::None).is_err());
    assert!(cross_entropy(&t(&[2, 3, 1]), &[0, 0], Reduction::None).is_err());
    let l = CosineLoss::default();
    assert!(l.forward(&x, &[0, 3]).is_err());
    assert!(l.forward(&x, &[0]).is_err());
    assert!(l.forward(&t(&[2, 3, 2]), &[0, 1]).is_err());
    assert!(
        CosineLoss {
            xent: f64::NAN,
            reduction: Reduction::Mean
        }
        .forward(&x, &[0, 1])
        .is_err()
    );
}

#[test]
fn backward_errors() {
    let x = t(&[2]).requires_grad();
    let y = x.exp().unwrap();
    assert!(y.backward().is_err()); // not one element
    assert!(y.backward_with(&t(&[3])).is_err());
}

/// The NumPy broadcast of two shapes, or None.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

fn any_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..=4, 0..=4)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn binary_ops_never_panic(a in any_shape(), b in any_shape(), op in 0usize..4) {
        let (x, y) = (t(&a), t(&b));
        let r = match op { 0 => x.add(&y), 1 => x.sub(&y), 2 => x.mul(&y), _ => x.div(&y) };
        match (r, broadcast(&a, &b)) {
            (Ok(z), Some(s)) => prop_assert_eq!(z.shape(), &s[..]),
            (Err(_), None) => {}
            (r, s) => prop_assert!(false, "{a:?} op {b:?}: got {:?}, expected shape {s:?}", r.map(|z| z.shape().to_vec())),
        }
    }

    #[test]
    fn reductions_never_panic(s in any_shape(), dims in prop::collection::vec(0usize..6, 0..4), keep in any::<bool>()) {
        let x = t(&s);
        let _ = x.sum_dim(&dims, keep);
        let _ = x.mean_dim(&dims, keep);
        let d = dims.first().copied().unwrap_or(0);
        if let Ok(m) = x.max_dim(d, keep) {
            prop_assert!(d < s.len() && s[d] > 0);
            prop_assert_eq!(m.numel(), s.iter().product::<usize>() / s[d]);
        }
        if let Ok(a) = x.argmax(d) { prop_assert_eq!(a.len(), s.iter().product::<usize>() / s[d]); }
        if let Ok(n) = x.norm_dim(d, keep) { prop_assert_eq!(n.ndim(), if keep { s.len() } else { s.len() - 1 }); }
        let _ = x.sum_to(&dims);
        let _ = x.sum();
        let _ = x.mean();
    }

    #[test]
    fn shape_ops_never_panic(s in any_shape(), to in any_shape(), perm in prop::collection::vec(0usize..5, 0..5), d in 0usize..6) {
        let x = t(&s);
        let numel = |v: &[usize]| v.iter().product::<usize>();
        match x.reshape(&to) {
            Ok(y) => prop_assert_eq!(y.shape(), &to[..]),
            Err(_) => prop_assert_ne!(numel(&s), numel(&to)),
        }
        if let Ok(y) = x.permute(&perm) {
            prop_assert_eq!(y.shape(), &perm.iter().map(|&p| s[p]).collect::<Vec<_>>()[..]);
        }
        let _ = x.transpose(d, d / 2);
        if let Ok(y) = x.flatten(d) { prop_assert_eq!(y.numel(), numel(&s)); }
        if let Ok(y) = x.expand(&to) { prop_assert_eq!(y.shape(), &to[..]); }
        if let Ok(y) = x.softmax(d) { prop_assert_eq!(y.shape(), &s[..]); }
        if let Ok(y) = x.log_softmax(d) { prop_assert_eq!(y.shape(), &s[..]); }
        if let Ok(y) = x.normalize(d, 1e-12) { prop_assert_eq!(y.shape(), &s[..]); }
        let _ = x.cosine_similarity(&t(&to), d, 1e-8);
    }

    #[test]
    fn losses_never_panic(s in any_shape(), tg in prop::collection::vec(0usize..6, 0..6), r in 0usize..3) {
        let red = [Reduction::Mean, Reduction::Sum, Reduction::None][r];
        let x = t(&s);
        let valid = s.len() == 2 && tg.len() == s[0] && tg.iter().all(|&c| c < s[1]);
        let a = cross_entropy(&x, &tg, red);
        let b = CosineLoss { xent: 0.1, reduction: red }.forward(&x, &tg);
        if valid {
            prop_assert!(a.is_ok() && b.is_ok(), "valid input rejected: {s:?} {tg:?}");
            let want: &[usize] = if red == Reduction::None { &s[..1] } else { &[] };
            prop_assert_eq!(a.unwrap().shape().to_vec(), want.to_vec());
            prop_assert_eq!(b.unwrap().shape().to_vec(), want.to_vec());
        } else {
            prop_assert!(a.is_err() && b.is_err(), "invalid input accepted: {s:?} {tg:?}");
        }
        let _ = Tensor::<f64>::one_hot(&tg, s.first().copied().unwrap_or(0), Device::Cpu);
    }
}
