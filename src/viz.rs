//! Pictures of the graph: Graphviz DOT text of the ops that produced a tensor.
//!
//! [`to_dot`] draws the graph as it is now. Backward frees the graph, so to draw it *with
//! gradients* (micrograd's data | grad picture) take a [`Graph::capture`] before backward and
//! call [`Graph::to_dot`] after it: the snapshot keeps handles to the leaves and to the tensors
//! marked with `retain_grad`, and shows their gradient norms once backward has filled them.
//!
//! ```
//! use smallgrad::{Device, Tensor, viz};
//! let w = Tensor::<f32>::randn(&[3, 2], 0, Device::Cpu)?.requires_grad();
//! let x = Tensor::<f32>::ones(&[4, 3], Device::Cpu)?;
//! let h = x.matmul(&w)?.relu()?.retain_grad();
//! let loss = h.sum()?;
//! let graph = viz::Graph::capture(&loss);
//! loss.backward()?;
//! let dot = graph.to_dot();
//! assert!(dot.starts_with("digraph") && dot.contains("matmul") && dot.contains("grad"));
//! # Ok::<(), smallgrad::Error>(())
//! ```
//! Render with `dot -Tsvg graph.dot -o graph.svg` (Debian package `graphviz`).

use crate::Tensor;
use crate::dtype::Float;
use std::collections::HashMap;
use std::fmt::Write as _;

/// The DOT text of the graph that produced `t` (ops, shapes, dtype, device), as it is now.
pub fn to_dot<T: Float>(t: &Tensor<T>) -> String {
    Graph::capture(t).to_dot()
}

/// What kind of tensor a graph node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// The output of a recorded op (its name).
    Op(&'static str),
    /// A leaf that requires grad (a parameter or checked input).
    Parameter,
    /// A leaf without grad (data, constants).
    Constant,
    /// An op whose graph was already freed by a backward (its inputs are unknown).
    Freed(&'static str),
}

/// One tensor of a captured graph.
#[derive(Debug, Clone)]
pub struct GraphNode<T: Float = f32> {
    /// Op output, parameter or constant.
    pub kind: NodeKind,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its device, as text.
    pub device: String,
    /// A handle kept for leaves that require grad and for `retain_grad` tensors, so that
    /// their gradients can be shown after backward.
    pub handle: Option<Tensor<T>>,
    /// Up to four values, for small tensors.
    pub values: Option<Vec<T>>,
}

/// A snapshot of the graph behind a tensor: nodes (root first) and edges input → output.
#[derive(Debug, Clone)]
pub struct Graph<T: Float = f32> {
    /// The tensors, the captured one first.
    pub nodes: Vec<GraphNode<T>>,
    /// (input node index, output node index).
    pub edges: Vec<(usize, usize)>,
}

impl<T: Float> Graph<T> {
    /// Walks the graph behind `t` (iteratively) and records every tensor and edge.
    pub fn capture(t: &Tensor<T>) -> Self {
        let mut index: HashMap<usize, usize> = HashMap::new();
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        let mut stack = vec![t.clone()];
        index.insert(t.id(), 0);
        nodes.push(Self::describe(t));
        while let Some(cur) = stack.pop() {
            let me = index[&cur.id()];
            let Some(node) = cur.node() else { continue };
            let Some(inputs) = node.inputs() else { continue };
            for inp in inputs {
                let k = match index.get(&inp.id()) {
                    Some(&k) => k,
                    None => {
                        let k = nodes.len();
                        index.insert(inp.id(), k);
                        nodes.push(Self::describe(&inp));
                        stack.push(inp.clone());
                        k
                    }
                };
                edges.push((k, me));
            }
        }
        Graph { nodes, edges }
    }

    fn describe(t: &Tensor<T>) -> GraphNode<T> {
        let (kind, keep) = match t.node() {
            Some(n) if n.inputs().is_none() => (NodeKind::Freed(n.name()), n.retains()),
            Some(n) => (NodeKind::Op(n.name()), n.retains()),
            None if t.is_requires_grad() => (NodeKind::Parameter, true),
            None => (NodeKind::Constant, false),
        };
        GraphNode {
            kind,
            shape: t.shape().to_vec(),
            device: t.device().to_string(),
            handle: keep.then(|| t.clone()),
            values: (t.numel() <= 4).then(|| t.to_vec().ok()).flatten(),
        }
    }

    /// The DOT text: op nodes as blue boxes, parameters green, constants grey; each labelled
    /// with shape, dtype and device, small values, and the gradient's L2 norm where one is
    /// known (leaves and `retain_grad` tensors after backward).
    pub fn to_dot(&self) -> String {
        let mut s = String::from(
            "digraph smallgrad {\n  rankdir=LR;\n  node [shape=record, fontname=\"monospace\", style=filled];\n",
        );
        for (i, n) in self.nodes.iter().enumerate() {
            let (title, color) = match n.kind {
                NodeKind::Op(name) => (name.to_string(), "lightblue"),
                NodeKind::Freed(name) => (format!("{name} (freed)"), "lightblue"),
                NodeKind::Parameter => ("parameter".to_string(), "palegreen"),
                NodeKind::Constant => ("constant".to_string(), "lightgrey"),
            };
            let mut fields = vec![
                escape(&title),
                escape(&format!("{:?} {} {}", n.shape, T::DTYPE, n.device)),
            ];
            if let Some(v) = &n.values {
                let vals: Vec<String> = v.iter().map(|x| format!("{:.4}", x.to_f64())).collect();
                fields.push(escape(&format!("data [{}]", vals.join(", "))));
            }
            if let Some(g) = n.handle.as_ref().and_then(|h| h.grad()) {
                let norm = g
                    .to_vec()
                    .map(|v| v.iter().map(|x| x.to_f64() * x.to_f64()).sum::<f64>().sqrt());
                if let Ok(norm) = norm {
                    fields.push(escape(&format!("grad norm {norm:.4}")));
                }
            }
            writeln!(s, "  t{i} [label=\"{{{}}}\", fillcolor={color}];", fields.join(" | ")).unwrap();
        }
        for (a, b) in &self.edges {
            writeln!(s, "  t{a} -> t{b};").unwrap();
        }
        s.push_str("}\n");
        s
    }
}

/// Escapes the characters that are special in DOT record labels.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '{' | '}' | '|' | '<' | '>' | '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{Device, Tensor};

    #[test]
    fn captures_nodes_edges_and_gradients() {
        let a = Tensor::<f64>::from_vec(vec![2.0], &[1], Device::Cpu)
            .unwrap()
            .requires_grad();
        let b = Tensor::<f64>::from_vec(vec![-3.0], &[1], Device::Cpu).unwrap();
        let c = a.mul(&b).unwrap().retain_grad();
        let d = c.add(&a).unwrap();
        let g = super::Graph::capture(&d);
        // d, c, a, b: four tensors; edges c->d, a->d, a->c, b->c.
        assert_eq!(g.nodes.len(), 4);
        assert_eq!(g.edges.len(), 4);
        let before = g.to_dot();
        assert!(before.contains("mul") && before.contains("add") && !before.contains("grad norm"));
        d.backward().unwrap();
        let after = g.to_dot();
        // a's gradient is b + 1 = -2; c's (retained) is 1.
        assert!(
            after.contains("grad norm 2.0000") && after.contains("grad norm 1.0000"),
            "{after}"
        );
        // The live graph is gone: drawing d now shows a freed op.
        assert!(super::to_dot(&d).contains("(freed)"));
    }
}
