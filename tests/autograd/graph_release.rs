//! The graph is dropped after backward: checked with the process-wide hidden counter
//! `smallgrad::autograd::live_graph_nodes()`. The counter counts every test's graphs, so the
//! check runs in a child process of this binary that runs this test alone.

use smallgrad::autograd::live_graph_nodes;
use smallgrad::{Device, Tensor};
use std::process::Command;

#[test]
fn graph_is_released_after_backward() {
    const ALONE: &str = "SMALLGRAD_GRAPH_RELEASE_CHILD";
    if std::env::var_os(ALONE).is_none() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "graph_release::graph_is_released_after_backward",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        return;
    }
    let before = live_graph_nodes();
    let x = Tensor::<f64>::from_vec(vec![0.5, -1.0, 2.0, 3.0], &[2, 2], Device::Cpu)
        .unwrap()
        .requires_grad();
    let w = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2], Device::Cpu)
        .unwrap()
        .requires_grad();
    let y = {
        let h = x.mul(&w).unwrap().tanh().unwrap();
        let k = h.mul(&h).unwrap().add(&x).unwrap().exp().unwrap();
        k.sum_dim(&[1], false).unwrap().sum().unwrap()
    };
    assert!(
        live_graph_nodes() >= before + 6,
        "graph recorded: {} live nodes",
        live_graph_nodes()
    );
    y.backward().unwrap();
    // Only y's own node may stay alive (y is still held); everything behind it is freed.
    assert!(
        live_graph_nodes() <= before + 1,
        "after backward: {} live nodes (before: {before})",
        live_graph_nodes()
    );
    drop(y);
    assert_eq!(live_graph_nodes(), before, "after dropping the output");
    assert!(x.grad().is_some() && w.grad().is_some());

    // A graph dropped without backward is freed too.
    let z = x.exp().unwrap().mul(&x).unwrap().sum().unwrap();
    assert!(live_graph_nodes() > before);
    drop(z);
    assert_eq!(live_graph_nodes(), before, "dropped without backward");

    // A graph whose backward failed midway (shape error from backward_with) is also freed
    // once dropped.
    let z = x.exp().unwrap();
    assert!(z.backward_with(&Tensor::zeros(&[3], Device::Cpu).unwrap()).is_err());
    drop(z);
    assert_eq!(live_graph_nodes(), before);
}
