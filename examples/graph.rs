//! Draw the graph autograd records: a tiny neuron, its graph captured before backward, drawn
//! after backward with the gradient norms of the parameters (micrograd's data | grad picture).
//!
//! Run with `cargo run --release --example graph`; it writes `out/graph.dot` and, when Graphviz
//! is installed (`apt-get install graphviz`), `out/graph.svg`.

use smallgrad::{Device, Result, Tensor, viz};
use std::process::Command;

fn main() -> Result<()> {
    // A neuron: y = tanh(w · x + b), with a squared-error loss against a target of 1.
    let x = Tensor::<f64>::from_vec(vec![2.0, -1.0], &[1, 2], Device::Cpu)?;
    let w = Tensor::<f64>::from_vec(vec![-0.5, 0.8], &[2, 1], Device::Cpu)?.requires_grad();
    let b = Tensor::<f64>::from_vec(vec![0.3], &[1], Device::Cpu)?.requires_grad();
    let y = x.matmul(&w)?.add(&b)?.tanh()?.retain_grad();
    let err = y.add_scalar(-1.0)?;
    let loss = err.mul(&err)?.sum()?;

    // Backward frees the graph, so take the snapshot first.
    let graph = viz::Graph::capture(&loss);
    loss.backward()?;
    println!("loss = {:.4}", loss.item()?);
    println!(
        "dloss/dw = {:?}, dloss/db = {:?}",
        w.grad().unwrap().to_vec()?,
        b.grad().unwrap().to_vec()?
    );

    let dot = graph.to_dot();
    std::fs::create_dir_all("out").map_err(|e| smallgrad::Error::Io {
        path: "out".into(),
        msg: e.to_string(),
    })?;
    std::fs::write("out/graph.dot", &dot).map_err(|e| smallgrad::Error::Io {
        path: "out/graph.dot".into(),
        msg: e.to_string(),
    })?;
    println!("wrote out/graph.dot ({} nodes)", graph.nodes.len());
    match Command::new("dot")
        .args(["-Tsvg", "out/graph.dot", "-o", "out/graph.svg"])
        .status()
    {
        Ok(s) if s.success() => println!("wrote out/graph.svg"),
        _ => println!(
            "Graphviz `dot` not found: `apt-get install graphviz`, then `dot -Tsvg out/graph.dot -o out/graph.svg`"
        ),
    }
    Ok(())
}
