//! In-place updates and saved state: batch_norm in eval mode keeps the per-channel values it
//! normalised with (copies, not the running-stat tensors), so a later training-mode call that
//! updates the running statistics in place cannot change the first graph's gradient: backward
//! still differentiates the computation that actually ran. (Saved *tensors* that change are an
//! `Err`: see the optimiser and batch-norm weight tests.)

use smallgrad::{Device, Tensor};

#[test]
fn running_stats_modified_after_eval_forward_keep_the_eval_gradient() {
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
    eval.backward().unwrap();
    // Eval with running var 1 (at forward time): dy/dx = 1 / sqrt(1 + eps), not the new var.
    let want = 1.0 / (1.0f64 + 1e-5).sqrt();
    for g in x.grad().unwrap().to_vec().unwrap() {
        assert!((g - want).abs() < 1e-12, "{g} vs {want}");
    }
    x.zero_grad();
    // The training graph itself is unaffected: sum of a standardised column has gradient 0.
    train.sum().unwrap().backward().unwrap();
    for g in x.grad().unwrap().to_vec().unwrap() {
        assert!(g.abs() < 1e-12);
    }
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
