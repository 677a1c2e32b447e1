//! Reverse-mode automatic differentiation: the graph, its topological order, gradient
//! accumulation, and `no_grad`.
//!
//! # How it works
//! Every op that has an input requiring grad wraps its output in a `Node`: the op's
//! `Backward` (a small struct next to the op's forward), the input handles, and whatever the
//! op saved for its backward. Tensors point at their inputs, never at their outputs, so the
//! graph is a DAG of `Arc`s with no cycles.
//!
//! `y.backward()` then
//! 1. orders the nodes reachable from `y` topologically with an explicit stack (no recursion:
//!    a ResNet-110 graph is thousands of nodes deep);
//! 2. walks them from `y` back to the leaves. Each node's gradient is complete when it is
//!    visited (every node that uses its output came earlier in the order), so a reused node
//!    (`x * x`, `a + a`, diamonds) sees the sum of all its consumers' contributions;
//! 3. hands each node's gradient to its `Backward`, adds the results into the inputs' pending
//!    gradients (or into the leaves' `.grad()`, summed across calls until `zero_grad`), and
//!    drops the node's state at once: the saved tensors and the edges to the inputs. So
//!    intermediate gradients live only until consumed, and after backward the graph is gone;
//!    a second backward through it is an `Err`, as in PyTorch without `retain_graph`.
//!
//! Backward runs under `no_grad`: gradients are plain tensors, not differentiable themselves.

use crate::dtype::Float;
use crate::tensor::Tensor;
use crate::{Error, Result, instrument};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The backward of one op: given dL/d(output), return dL/d(input) for each of the op's
/// recorded inputs, in order (`None` where an input needs no gradient). Implementations sit
/// next to their forward, in the op's file, with the derivation in a comment.
pub(crate) trait Backward<T: Float>: Send + Sync {
    /// The op's name, for error messages, tracing and graph pictures.
    fn name(&self) -> &'static str;
    /// `grad` has the output's shape; `inputs` are the recorded inputs (query
    /// `is_requires_grad()` to skip gradients nobody needs). Each returned gradient must have
    /// its input's shape.
    fn backward(&self, grad: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>>;
}

struct NodeState<T: Float> {
    backward: Box<dyn Backward<T>>,
    inputs: Vec<Tensor<T>>,
}

static LIVE_NODES: AtomicUsize = AtomicUsize::new(0);

/// The number of graph nodes alive in this process (all threads). For tests of graph
/// release; not a stable API.
#[doc(hidden)]
pub fn live_graph_nodes() -> usize {
    LIVE_NODES.load(Ordering::SeqCst)
}

/// One recorded op application: how to run its backward and which tensors it came from.
pub(crate) struct Node<T: Float> {
    name: &'static str,
    /// Where the op was called, recorded while `detect_anomaly` is on.
    created_at: Option<&'static Location<'static>>,
    state: Mutex<Option<NodeState<T>>>,
    retain: AtomicBool,
    retained: Mutex<Option<Tensor<T>>>,
}

impl<T: Float> Drop for Node<T> {
    fn drop(&mut self) {
        LIVE_NODES.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<T: Float> Node<T> {
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
    pub(crate) fn set_retain(&self) {
        self.retain.store(true, Ordering::SeqCst);
    }
    pub(crate) fn retains(&self) -> bool {
        self.retain.load(Ordering::SeqCst)
    }
    pub(crate) fn retained_grad(&self) -> Option<Tensor<T>> {
        self.retained.lock().unwrap().clone()
    }
    pub(crate) fn clear_retained(&self) {
        *self.retained.lock().unwrap() = None;
    }
    /// The inputs of this node, or `None` once backward has freed it.
    pub(crate) fn inputs(&self) -> Option<Vec<Tensor<T>>> {
        self.state.lock().unwrap().as_ref().map(|s| s.inputs.clone())
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread currently record the graph (false inside [`no_grad`]).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

struct GradModeGuard(bool);
impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.0));
    }
}

/// Runs `f` without recording the graph (on this thread) and returns its value: evaluation,
/// optimiser steps, and every backward use this. Nests; restores the previous mode even if
/// `f` panics.
///
/// ```
/// use smallgrad::{Tensor, Device, no_grad};
/// let x = Tensor::<f32>::ones(&[2], Device::Cpu)?.requires_grad();
/// let y = no_grad(|| x.mul_scalar(3.0))?;
/// assert!(!y.is_requires_grad());
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let prev = GRAD_ENABLED.with(|g| g.replace(false));
    let _guard = GradModeGuard(prev);
    f()
}

/// Records `backward` as the node producing `out`, if grad mode is on and any input requires
/// grad; otherwise returns `out` unchanged. Every differentiable op ends with this call, which
/// is also where tracing, profiling and anomaly detection see the op (see `instrument`).
#[track_caller]
pub(crate) fn record<T: Float>(
    out: Tensor<T>,
    inputs: &[&Tensor<T>],
    backward: impl Backward<T> + 'static,
) -> Result<Tensor<T>> {
    instrument::forward_done(backward.name(), inputs, &out)?;
    if !is_grad_enabled() || !inputs.iter().any(|t| t.is_requires_grad()) {
        return Ok(out);
    }
    LIVE_NODES.fetch_add(1, Ordering::SeqCst);
    let node = Node {
        name: backward.name(),
        created_at: if instrument::anomaly_mode() {
            Some(Location::caller())
        } else {
            None
        },
        state: Mutex::new(Some(NodeState {
            backward: Box::new(backward),
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
        })),
        retain: AtomicBool::new(false),
        retained: Mutex::new(None),
    };
    Ok(out.with_node(Arc::new(node)))
}

/// A tensor saved for backward together with its storage version at save time. Reading it
/// after an in-place update (optimiser step, running stats) is an `Err`, not a wrong gradient.
pub(crate) struct Saved<T: Float> {
    tensor: Tensor<T>,
    version: u64,
}

impl<T: Float> Saved<T> {
    pub(crate) fn new(t: &Tensor<T>) -> Self {
        Saved {
            tensor: t.clone(),
            version: t.version(),
        }
    }
    pub(crate) fn get(&self, op: &'static str) -> Result<&Tensor<T>> {
        if self.tensor.version() != self.version {
            return Err(Error::autograd(format!(
                "{op}: a tensor of shape {:?} saved for backward was modified in place since \
                 the forward (version {} now, {} when saved); recompute the forward after \
                 in-place updates such as an optimiser step",
                self.tensor.shape(),
                self.tensor.version(),
                self.version
            )));
        }
        Ok(&self.tensor)
    }
}

fn key<T: Float>(n: &Arc<Node<T>>) -> usize {
    Arc::as_ptr(n) as usize
}

/// Topological order of the nodes reachable from `root`, root first: an iterative depth-first
/// search that emits a node after all of its inputs (post-order), reversed. A node is marked
/// when it is *expanded*, not when it is pushed: a node pushed early and reached again through
/// a deeper path must still be emitted below that path, or a consumer would run after it and
/// its gradient contribution would be lost. Errs if a reachable node was already freed.
fn topo_order<T: Float>(root: &Arc<Node<T>>) -> Result<Vec<Arc<Node<T>>>> {
    let mut post = Vec::new();
    let mut expanded: HashSet<usize> = HashSet::new();
    // (node, its inputs have been pushed)
    let mut stack: Vec<(Arc<Node<T>>, bool)> = vec![(root.clone(), false)];
    while let Some((node, done)) = stack.pop() {
        if done {
            post.push(node);
            continue;
        }
        if !expanded.insert(key(&node)) {
            continue;
        }
        let inputs = node.inputs().ok_or_else(|| {
            Error::autograd(format!(
                "backward through a graph that was already freed (node `{}`): a graph is \
                 released by its first backward; run the forward again to get a new one",
                node.name
            ))
        })?;
        stack.push((node, true));
        for inp in inputs.iter().rev() {
            if let Some(child) = inp.node()
                && !expanded.contains(&key(child))
            {
                stack.push((child.clone(), false));
            }
        }
    }
    post.reverse();
    Ok(post)
}

/// Adds `g` into a pending gradient slot.
fn accumulate<T: Float>(slot: &mut Option<Tensor<T>>, g: Tensor<T>) -> Result<()> {
    *slot = Some(match slot.take() {
        None => g,
        Some(prev) => prev.add(&g)?,
    });
    Ok(())
}

/// The backward engine behind `Tensor::backward` / `backward_with`.
pub(crate) fn run_backward<T: Float>(root: &Tensor<T>, grad: Tensor<T>) -> Result<()> {
    let _engine = instrument::engine_scope();
    no_grad(|| {
        if grad.shape() != root.shape() {
            return Err(Error::shape(
                "backward_with",
                format!(
                    "gradient shape {:?} differs from the tensor's shape {:?}",
                    grad.shape(),
                    root.shape()
                ),
            ));
        }
        if grad.device() != root.device() {
            return Err(Error::device(format!(
                "backward_with: gradient on {} but the tensor is on {}",
                grad.device(),
                root.device()
            )));
        }
        let Some(root_node) = root.node() else {
            if root.is_requires_grad() {
                return root.accumulate_grad(grad);
            }
            return Err(Error::autograd(
                "backward on a tensor that does not require grad and has no graph (did you \
                 forget `.requires_grad()` on an input, or compute it under no_grad?)",
            ));
        };
        let order = topo_order(root_node)?;
        let mut pending: HashMap<usize, Option<Tensor<T>>> = HashMap::new();
        pending.insert(key(root_node), Some(grad));
        for node in order {
            let g = pending.remove(&key(&node)).flatten();
            // Taking the state frees the saved tensors and input edges when it drops below.
            let Some(state) = node.state.lock().unwrap().take() else {
                return Err(Error::autograd(format!(
                    "backward reached node `{}` whose graph was already freed",
                    node.name
                )));
            };
            let Some(g) = g else { continue };
            if node.retain.load(Ordering::SeqCst) {
                let mut r = node.retained.lock().unwrap();
                accumulate(&mut r, g.clone())?;
            }
            let scope = instrument::backward_start();
            let grads = state.backward.backward(&g, &state.inputs)?;
            instrument::backward_done(scope, node.name, node.created_at, &g, &grads)?;
            drop(g);
            if grads.len() != state.inputs.len() {
                // A bug in the op's Backward, never silently truncated by the zip below.
                return Err(Error::autograd(format!(
                    "internal error: backward of `{}` returned {} gradients for {} inputs",
                    node.name,
                    grads.len(),
                    state.inputs.len()
                )));
            }
            for (inp, gi) in state.inputs.iter().zip(grads) {
                let Some(gi) = gi else { continue };
                if !inp.is_requires_grad() {
                    continue;
                }
                if gi.shape() != inp.shape() {
                    return Err(Error::autograd(format!(
                        "internal error: backward of `{}` returned a gradient of shape {:?} for \
                         an input of shape {:?}",
                        node.name,
                        gi.shape(),
                        inp.shape()
                    )));
                }
                match inp.node() {
                    Some(child) => accumulate(pending.entry(key(child)).or_insert(None), gi)?,
                    None => inp.accumulate_grad(gi)?,
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use crate::{Device, Tensor};
    use std::sync::Arc;

    #[test]
    fn graph_is_freed_after_backward() {
        let x = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0], &[3], Device::Cpu)
            .unwrap()
            .requires_grad();
        let y = x.exp().unwrap();
        let weak_y = Arc::downgrade(y.node().unwrap());
        let z = y.mul(&y).unwrap().sum().unwrap();
        let weak_z = Arc::downgrade(z.node().unwrap());
        drop(y);
        // z's node keeps y alive through its input edges.
        assert!(weak_y.upgrade().is_some());
        z.backward().unwrap();
        // Backward dropped z's edges, so y (and its node) are gone although z is alive.
        assert!(weak_y.upgrade().is_none());
        assert!(weak_z.upgrade().is_some());
        // A second backward through the freed graph is an error.
        assert!(z.backward().is_err());
        drop(z);
        assert!(weak_z.upgrade().is_none());
        assert!(x.grad().is_some());
    }

    /// A Backward that returns one gradient for its two inputs.
    struct OneTooFew;
    impl super::Backward<f64> for OneTooFew {
        fn name(&self) -> &'static str {
            "one_too_few"
        }
        fn backward(&self, g: &Tensor<f64>, _: &[Tensor<f64>]) -> crate::Result<Vec<Option<Tensor<f64>>>> {
            Ok(vec![Some(g.clone())])
        }
    }

    #[test]
    fn a_backward_returning_the_wrong_number_of_gradients_is_an_err_naming_it() {
        let a = Tensor::<f64>::ones(&[2], Device::Cpu).unwrap().requires_grad();
        let b = Tensor::<f64>::ones(&[2], Device::Cpu).unwrap().requires_grad();
        let out = super::record(a.add(&b).unwrap().detach(), &[&a, &b], OneTooFew).unwrap();
        let e = out.sum().unwrap().backward().unwrap_err().to_string();
        assert!(e.contains("`one_too_few` returned 1 gradients for 2 inputs"), "{e}");
    }

    #[test]
    fn a_node_reached_through_paths_of_different_depth_gets_every_contribution() {
        // y = sum(tanh(h) + h), h = exp(x): h feeds `add` directly and through `tanh`.
        let xs = [0.3, -0.7];
        let x = Tensor::<f64>::from_vec(xs.to_vec(), &[2], Device::Cpu)
            .unwrap()
            .requires_grad();
        let h = x.exp().unwrap();
        h.tanh().unwrap().add(&h).unwrap().sum().unwrap().backward().unwrap();
        let g = x.grad().unwrap().to_vec().unwrap();
        for (gi, xi) in g.iter().zip(xs) {
            let hv = f64::exp(xi);
            let want = (1.0 - hv.tanh().powi(2) + 1.0) * hv;
            assert!((gi - want).abs() < 1e-12, "{gi} vs {want}");
        }
    }
}
