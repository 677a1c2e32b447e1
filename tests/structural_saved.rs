//! A tensor saved for backward and then modified in place makes backward an `Err`: batch_norm
//! in eval mode saves the running statistics; a training-mode call on the same running
//! statistics then updates them in place before the first graph's backward.

use smallgrad::{Device, Tensor};

#[test]
fn running_stats_modified_after_eval_forward_errs() {
    let cpu = Device::Cpu;
    let rm = Tensor::<f64>::zeros(&[3], cpu).unwrap();
    let rv = Tensor::<f64>::ones(&[3], cpu).unwrap();
    let x = Tensor::<f64>::randn(&[4, 3], 7, cpu).unwrap().requires_grad();
    let eval = x
        .batch_norm(Some(&rm), Some(&rv), None, None, false, 0.1, 1e-5)
        .unwrap()
        .sum()
        .unwrap();
    // Training-mode forward on the same running statistics: updates them in place.
    let before = rm.to_vec().unwrap();
    let train = x.batch_norm(Some(&rm), Some(&rv), None, None, true, 0.1, 1e-5).unwrap();
    assert_ne!(
        rm.to_vec().unwrap(),
        before,
        "training mode must update running_mean in place"
    );
    let err = eval.backward();
    assert!(
        err.is_err(),
        "backward through an eval batch_norm whose running stats changed must fail"
    );
    assert!(x.grad().is_none());
    // The training graph itself is unaffected.
    train.sum().unwrap().backward().unwrap();
    assert!(x.grad().is_some());
}

#[test]
fn eval_backward_before_update_is_fine() {
    let cpu = Device::Cpu;
    let rm = Tensor::<f64>::zeros(&[3], cpu).unwrap();
    let rv = Tensor::<f64>::full(&[3], 4.0, cpu).unwrap();
    let x = Tensor::<f64>::randn(&[4, 3], 7, cpu).unwrap().requires_grad();
    x.batch_norm(Some(&rm), Some(&rv), None, None, false, 0.1, 0.0)
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    // Eval: y = (x - 0) / sqrt(4), dy/dx = 0.5.
    for g in x.grad().unwrap().to_vec().unwrap() {
        assert!((g - 0.5).abs() < 1e-12);
    }
}
