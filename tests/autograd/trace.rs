//! `SMALLGRAD_TRACE=1` prints every forward and backward op with shapes and time. The variable
//! is read once per process, so the test re-runs this test binary as a child with it set.

use smallgrad::{Device, Tensor};
use std::process::Command;

#[test]
fn trace_child() {
    if std::env::var_os("SMALLGRAD_TRACE_CHILD").is_none() {
        return; // only meaningful inside the child started below
    }
    let x = Tensor::<f32>::randn(&[2, 3, 5, 5], 0, Device::Cpu)
        .unwrap()
        .requires_grad();
    let w = Tensor::<f32>::randn(&[4, 3, 3, 3], 1, Device::Cpu)
        .unwrap()
        .requires_grad();
    x.conv2d(&w, None, 1, 1)
        .unwrap()
        .relu()
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
}

#[test]
fn trace_prints_forward_and_backward_ops() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "trace::trace_child", "--nocapture", "--test-threads", "1"])
        .env("SMALLGRAD_TRACE", "1")
        .env("SMALLGRAD_TRACE_CHILD", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("forward  conv2d") && err.contains("[2, 3, 5, 5] x [4, 3, 3, 3] -> [2, 4, 5, 5]"),
        "{err}"
    );
    assert!(
        err.contains("backward conv2d") && err.contains("backward relu") && err.contains(" ms"),
        "{err}"
    );
}
