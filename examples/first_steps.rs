//! First steps: a tiny expression, its backward, and the same gradients derived by hand.
//!
//! Run with `cargo run --release --example first_steps`.
//!
//! The expression is y = tanh(a·b + c) · a. By the chain rule, with t = tanh(a·b + c):
//!   dy/da = t + a·(1 - t²)·b      (a appears twice: once directly, once inside tanh)
//!   dy/db = a·(1 - t²)·a
//!   dy/dc = a·(1 - t²)
//! Reverse mode computes all three in one backward pass, starting from dy/dy = 1.

use smallgrad::{Device, Result, Tensor};

fn scalar(v: f64) -> Result<Tensor<f64>> {
    // A 0-dimensional tensor (shape []) holding one value, tracked by autograd.
    Ok(Tensor::from_vec(vec![v], &[], Device::Cpu)?.requires_grad())
}

fn main() -> Result<()> {
    let (av, bv, cv) = (2.0, -1.5, 0.5);
    let a = scalar(av)?;
    let b = scalar(bv)?;
    let c = scalar(cv)?;

    // Forward: every op records a node of the graph.
    let t = a.mul(&b)?.add(&c)?.tanh()?.retain_grad();
    let y = t.mul(&a)?;
    println!("y = tanh(a*b + c) * a = {:.6}", y.item()?);
    println!(
        "graph: y was made by `{}`; t by `{}`",
        y.op_name().unwrap_or("leaf"),
        t.op_name().unwrap_or("leaf")
    );

    // Backward: dy/dy = 1, then the chain rule through the graph in reverse topological order.
    y.backward()?;

    // The same derivatives by hand.
    let tv = (av * bv + cv).tanh();
    let hand = [
        tv + av * (1.0 - tv * tv) * bv,
        av * (1.0 - tv * tv) * av,
        av * (1.0 - tv * tv),
    ];
    println!();
    println!("{:<6} {:>14} {:>14}", "", "autograd", "by hand");
    for (name, x, h) in [("dy/da", &a, hand[0]), ("dy/db", &b, hand[1]), ("dy/dc", &c, hand[2])] {
        let g = x.grad().expect("a leaf that requires grad gets a gradient").item()?;
        println!("{name:<6} {g:>14.10} {h:>14.10}");
        assert!((g - h).abs() < 1e-12, "{name}: autograd {g} vs hand {h}");
    }
    // A non-leaf keeps its gradient only when asked (retain_grad): dy/dt = a.
    println!("dy/dt  {:>14.10} {:>14.10}", t.grad().unwrap().item()?, av);

    // The graph was freed by backward: a second backward is an error, not a silent wrong answer.
    match y.backward() {
        Err(e) => println!("\nsecond backward: {e}"),
        Ok(()) => unreachable!("the graph is freed after backward"),
    }
    Ok(())
}
