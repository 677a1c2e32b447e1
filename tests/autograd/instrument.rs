//! Tracing hooks: `profile` counts ops per phase; `detect_anomaly` names the op and the caller's
//! line, in forward and in backward.

use smallgrad::{Device, Phase, Tensor, detect_anomaly, profile};

#[test]
fn profile_counts_forward_and_backward_ops() {
    let x = Tensor::<f32>::randn(&[8, 8], 0, Device::Cpu).unwrap().requires_grad();
    let (r, prof) = profile(|| -> smallgrad::Result<()> {
        let y = x.matmul(&x)?.relu()?;
        let z = y.relu()?.sum()?;
        z.backward()
    });
    r.unwrap();
    let calls = |name: &str, phase: Phase| {
        prof.rows
            .iter()
            .filter(|r| r.0 == name && r.1 == phase)
            .map(|r| r.2)
            .sum::<u64>()
    };
    assert_eq!(calls("relu", Phase::Forward), 2);
    assert_eq!(calls("relu", Phase::Backward), 2);
    assert_eq!(calls("matmul", Phase::Forward), 1);
    assert_eq!(calls("matmul", Phase::Backward), 1);
    assert_eq!(calls("sum", Phase::Forward), 1);
    // Ops run inside a backward (the engine's own accumulation) are not counted as forward ops.
    assert_eq!(calls("add", Phase::Forward), 0);
    let table = prof.to_string();
    assert!(table.contains("matmul") && table.contains("backward") && table.contains("total"));
    // Outside `profile` nothing is collected.
    let (_, empty) = profile(|| ());
    assert!(empty.rows.is_empty());
}

#[test]
fn anomaly_in_forward_names_op_and_caller_line() {
    let x = Tensor::<f64>::from_vec(vec![1.0, -1.0], &[2], Device::Cpu).unwrap();
    let line = line!() + 1;
    let r = detect_anomaly(|| x.sqrt()?.sum());
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("forward of `sqrt`"), "{msg}");
    assert!(msg.contains(&format!("{}:{line}", file!())), "{msg}");
    // Without the mode, the same computation is an ordinary NaN, not an error.
    assert!(x.sqrt().unwrap().sum().unwrap().item().unwrap().is_nan());
}

#[test]
fn anomaly_in_backward_names_op_and_where_it_was_created() {
    // sqrt(0) = 0 is finite, but its gradient 1 / (2 sqrt(0)) is infinite.
    let x = Tensor::<f64>::from_vec(vec![0.0, 4.0], &[2], Device::Cpu)
        .unwrap()
        .requires_grad();
    let line = line!() + 2;
    let r = detect_anomaly(|| {
        let y = x.sqrt()?.sum()?;
        y.backward()
    });
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("backward of `sqrt`"), "{msg}");
    assert!(msg.contains(&format!("{}:{line}", file!())), "{msg}");
}

#[test]
fn a_swallowed_anomaly_is_still_reported() {
    let x = Tensor::<f32>::from_vec(vec![-1.0], &[1], Device::Cpu).unwrap();
    let r = detect_anomaly(|| {
        let _ignored = x.log();
        Ok(1)
    });
    assert!(r.is_err());
    // And the mode is off again afterwards.
    assert!(x.log().is_ok());
}
