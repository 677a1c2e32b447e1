//! Invalid input is an `Err`, never a panic, for conv2d, the pools, matmul and batch_norm:
//! named cases and proptests over random (often invalid) shapes and parameters.

use crate::strategies::config;
use proptest::prelude::*;
use smallgrad::{Device, Tensor};

fn t(shape: &[usize]) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|i| (i as f64 * 0.37).sin()).collect(), shape, Device::Cpu).unwrap()
}

#[test]
fn conv2d_errors() {
    let x = t(&[1, 3, 5, 5]);
    assert!(x.conv2d(&t(&[2, 4, 3, 3]), None, 1, 0).is_err(), "channel mismatch");
    assert!(x.conv2d(&t(&[2, 3, 3, 3]), None, 0, 0).is_err(), "stride 0");
    // Absurd padding: buffers beyond the address space, or beyond any machine's memory.
    for pad in [1usize << 31, 1 << 40, usize::MAX / 4] {
        assert!(x.conv2d(&t(&[2, 3, 3, 3]), None, 1, pad).is_err(), "padding {pad}");
        assert!(
            x.conv2d(&t(&[2, 3, 3, 3]), None, 2, (0, pad)).is_err(),
            "padding (0, {pad})"
        );
    }
    assert!(
        x.conv2d(&t(&[2, 3, 3, 3]), None, (1, 0), 0).is_err(),
        "stride 0 on one axis"
    );
    assert!(x.conv2d(&t(&[2, 3, 6, 3]), None, 1, 0).is_err(), "kernel > input");
    assert!(
        x.conv2d(&t(&[2, 3, 6, 3]), None, 1, (1, 0)).is_ok(),
        "kernel fits padded input"
    );
    assert!(
        x.conv2d(&t(&[2, 3, 3, 3]), Some(&t(&[3])), 1, 0).is_err(),
        "bias length"
    );
    assert!(x.conv2d(&t(&[2, 3, 3]), None, 1, 0).is_err(), "weight rank");
    assert!(
        t(&[3, 5, 5]).conv2d(&t(&[2, 3, 3, 3]), None, 1, 0).is_err(),
        "input rank"
    );
    assert!(x.conv2d(&t(&[2, 3, 0, 3]), None, 1, 0).is_err(), "empty kernel");
    assert!(
        x.conv2d(&t(&[2, 3, 3, 3]), None, usize::MAX, 0).is_ok(),
        "huge stride: one output"
    );
    assert!(
        x.conv2d(&t(&[2, 3, 3, 3]), None, 1, usize::MAX).is_err(),
        "overflowing padding"
    );
}

#[test]
fn pool_errors() {
    let x = t(&[1, 2, 6, 6]);
    for pool in [Tensor::max_pool2d, Tensor::avg_pool2d]
        as [fn(&Tensor<f64>, (usize, usize), (usize, usize), (usize, usize)) -> _; 2]
    {
        assert!(pool(&x, (3, 3), (1, 1), (2, 0)).is_err(), "padding > kernel/2");
        assert!(pool(&x, (3, 3), (0, 1), (0, 0)).is_err(), "stride 0");
        assert!(pool(&x, (0, 3), (1, 1), (0, 0)).is_err(), "kernel 0");
        assert!(pool(&x, (7, 2), (1, 1), (0, 0)).is_err(), "kernel > input");
        assert!(pool(&t(&[2, 6, 6]), (2, 2), (2, 2), (0, 0)).is_err(), "rank 3");
        // An empty spatial dim with padding: windows that hold no pixel (found by
        // pools_never_panic as [1, 1, 1, 0], kernel (2, 4), padding (1, 2), which panicked).
        assert!(pool(&t(&[1, 1, 1, 0]), (2, 4), (1, 1), (1, 2)).is_err(), "empty width");
        assert!(pool(&t(&[1, 1, 0, 3]), (2, 2), (1, 1), (1, 1)).is_err(), "empty height");
        assert!(
            pool(&t(&[0, 1, 4, 4]), (2, 2), (2, 2), (0, 0)).is_ok(),
            "an empty batch is fine"
        );
        assert!(pool(&x, (2, 2), (2, 2), (1, 1)).is_ok());
    }
    assert!(x.adaptive_avg_pool2d(0).is_err(), "output size 0");
    assert!(x.adaptive_avg_pool2d((2, 0)).is_err(), "output size 0 on one axis");
    assert!(t(&[2, 6, 6]).adaptive_avg_pool2d(1).is_err(), "rank 3");
}

#[test]
fn matmul_errors() {
    assert!(t(&[2, 3]).matmul(&t(&[4, 5])).is_err(), "inner mismatch");
    assert!(t(&[2, 2, 3]).matmul(&t(&[3, 2, 5])).is_err(), "batch mismatch");
    assert!(t(&[2, 2, 3]).matmul(&t(&[2, 4, 5])).is_err(), "batched inner mismatch");
    assert!(
        t(&[2, 2, 3]).matmul(&t(&[4, 5])).is_err(),
        "broadcast rhs inner mismatch"
    );
    assert!(t(&[3]).matmul(&t(&[3, 2])).is_err() || t(&[3]).matmul(&t(&[3, 2])).unwrap().numel() == 2);
}

#[test]
fn batch_norm_errors() {
    let c = |n| t(&[n]);
    // Training with one value per channel.
    assert!(t(&[1, 3]).batch_norm(None, None, None, None, true, 0.1, 1e-5).is_err());
    assert!(
        t(&[1, 3, 1, 1])
            .batch_norm(Some(&c(3)), Some(&c(3).abs().unwrap()), None, None, true, 0.1, 1e-5)
            .is_err()
    );
    // ...but eval mode is fine with one value.
    assert!(
        t(&[1, 3])
            .batch_norm(Some(&c(3)), Some(&c(3).abs().unwrap()), None, None, false, 0.1, 1e-5)
            .is_ok()
    );
    let x = t(&[4, 3, 2, 2]);
    assert!(
        x.batch_norm(Some(&c(2)), Some(&c(3)), None, None, true, 0.1, 1e-5)
            .is_err(),
        "running_mean length"
    );
    assert!(
        x.batch_norm(Some(&c(3)), Some(&c(4)), None, None, true, 0.1, 1e-5)
            .is_err(),
        "running_var length"
    );
    assert!(
        x.batch_norm(None, None, Some(&c(2)), Some(&c(3)), true, 0.1, 1e-5)
            .is_err(),
        "weight length"
    );
    assert!(
        x.batch_norm(None, None, Some(&c(3)), Some(&c(5)), true, 0.1, 1e-5)
            .is_err(),
        "bias length"
    );
    assert!(
        x.batch_norm(None, None, None, None, false, 0.1, 1e-5).is_err(),
        "eval without running stats"
    );
    assert!(
        t(&[4]).batch_norm(None, None, None, None, true, 0.1, 1e-5).is_err(),
        "rank 1"
    );
    assert!(
        t(&[4, 3, 2, 2, 2])
            .batch_norm(None, None, None, None, true, 0.1, 1e-5)
            .is_err(),
        "rank 5"
    );
}

fn any_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..=5, 0..=5)
}

fn pair() -> impl Strategy<Value = (usize, usize)> {
    (0usize..=5, 0usize..=5)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn conv2d_never_panics(xs in any_shape(), ws in any_shape(), bias in prop::option::of(0usize..4), s in pair(), p in pair()) {
        let (x, w) = (t(&xs), t(&ws));
        let b = bias.map(|n| t(&[n]));
        if let Ok(y) = x.conv2d(&w, b.as_ref(), s, p) {
            let oh = (xs[2] + 2 * p.0 - ws[2]) / s.0 + 1;
            let ow = (xs[3] + 2 * p.1 - ws[3]) / s.1 + 1;
            prop_assert_eq!(y.shape(), &[xs[0], ws[0], oh, ow][..]);
            prop_assert_eq!(xs[1], ws[1]);
        }
    }

    #[test]
    fn pools_never_panic(xs in any_shape(), k in pair(), s in pair(), p in pair(), o in pair()) {
        let x = t(&xs);
        for (name, r) in [("max", x.max_pool2d(k, s, p)), ("avg", x.avg_pool2d(k, s, p))] {
            if let Ok(y) = r {
                prop_assert!(p.0 <= k.0 / 2 && p.1 <= k.1 / 2, "{name}: padding {p:?} > kernel/2 {k:?} accepted");
                let oh = (xs[2] + 2 * p.0 - k.0) / s.0 + 1;
                let ow = (xs[3] + 2 * p.1 - k.1) / s.1 + 1;
                prop_assert_eq!(y.shape(), &[xs[0], xs[1], oh, ow][..]);
            }
        }
        if let Ok(y) = x.adaptive_avg_pool2d(o) {
            prop_assert_eq!(y.shape(), &[xs[0], xs[1], o.0, o.1][..]);
        }
    }

    #[test]
    fn matmul_never_panics(a in any_shape(), b in any_shape()) {
        if let Ok(y) = t(&a).matmul(&t(&b)) {
            prop_assert!(a.len() >= 2 && b.len() >= 2, "{a:?} x {b:?} accepted");
            let r = a.len();
            prop_assert_eq!(a[r - 1], b[b.len() - 2]);
            prop_assert_eq!(y.shape()[..r - 1].to_vec(), a[..r - 1].to_vec());
            prop_assert_eq!(y.shape()[r - 1], b[b.len() - 1]);
        }
    }

    #[test]
    fn batch_norm_never_panics(xs in any_shape(), lens in prop::collection::vec(prop::option::of(0usize..5), 4), training in any::<bool>()) {
        let opt: Vec<Option<Tensor<f64>>> = lens.iter().map(|l| l.map(|n| t(&[n]).abs().unwrap())).collect();
        if let Ok(y) = t(&xs).batch_norm(opt[0].as_ref(), opt[1].as_ref(), opt[2].as_ref(), opt[3].as_ref(), training, 0.1, 1e-5) {
            prop_assert_eq!(y.shape(), &xs[..]);
            prop_assert!((2..=4).contains(&xs.len()), "batch_norm accepts [N, C], [N, C, L] and [N, C, H, W]");
            for l in lens.iter().flatten() {
                prop_assert_eq!(*l, xs[1]);
            }
        }
    }
}
