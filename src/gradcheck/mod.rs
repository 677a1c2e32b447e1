//! [`gradcheck`]: proves an analytic gradient against central finite differences, as
//! `torch.autograd.gradcheck` does. Run it on every new op (or composite) you write.
//!
//! # What is compared
//! For a function `y = f(x_0, ..., x_{k-1})` with any output shape, each input's Jacobian
//! `J[j, i] = d y_j / d x_i` is computed twice:
//! - **analytically**, by reverse mode: one backward per output element `j` with the one-hot
//!   upstream gradient `e_j` gives row `j` of every input's Jacobian;
//! - **numerically**, by central differences: `(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`
//!   gives column `i` (the other inputs unperturbed, `f` run under [`no_grad`](crate::no_grad)).
//!
//! Every entry must satisfy PyTorch's criterion `|analytic - numeric| <= atol + rtol * |numeric|`.
//! Full mode costs `numel(output)` backward passes and `2 * numel(input)` forward passes per
//! input. For big inputs, **fast mode** (PyTorch's `fast_mode`) compares projections instead: for
//! random unit directions `u` (input space) and `v` (output space) it checks `v^T J u`, computed
//! as `(grad of v^T y) . u` analytically and as `v . (f(x + eps u) - f(x - eps u)) / (2 eps)`
//! numerically: one backward and two forwards per direction pair and input.
//!
//! Before that, structural checks run: `f` must be finite at the given point, gradients must have
//! their inputs' shapes, two forward + backward runs with the same upstream gradient must give
//! bit-identical gradients (smallgrad promises determinism), and a zero upstream gradient must
//! give zero gradients (a backward is linear in its upstream gradient).
//!
//! # Why f64, and why eps = 1e-6
//! The central difference has two error sources. Truncation: by Taylor,
//! `(f(x+h) - f(x-h)) / 2h = f'(x) + f'''(x) h^2 / 6 + ...`, an error O(h^2). Rounding: `f` is
//! evaluated with relative error about the unit roundoff `u`, and dividing the difference by
//! `2h` amplifies that to O(u |f| / h). The total is smallest near `h ~ u^(1/3)`. In f64
//! (`u = 1.1e-16`) that is about 5e-6, and with `eps = 1e-6` both errors (about 1e-12 and 1e-10
//! for well-scaled f) sit far below `atol = 1e-5`. In f32 (`u = 6e-8`) the same eps gives a
//! rounding error near 0.06, and even the best h leaves errors around 1e-5 relative, so f32
//! finite differences are noise at these tolerances: gradcheck works in f64 only.
//!
//! A kink (relu at 0, abs at 0, max ties) within `eps` of an input makes the numeric derivative
//! an average of both sides; choose inputs away from such points.

mod report;

use report::{Entry, Outcome, describe_failure};
pub use report::{GradcheckReport, InputReport};

use crate::shape::{numel, unravel};
use crate::{Device, Error, Result, Rng, Tensor, no_grad};

/// Settings of [`gradcheck`]. The defaults are PyTorch's: `eps 1e-6`, `atol 1e-5`,
/// `rtol 1e-3`, full mode, seed 0.
#[derive(Debug, Clone, PartialEq)]
pub struct GradcheckOptions {
    /// The finite-difference step (each side), > 0.
    pub eps: f64,
    /// Absolute tolerance, >= 0.
    pub atol: f64,
    /// Relative tolerance (relative to the numeric value), >= 0.
    pub rtol: f64,
    /// Compare random projections `v^T J u` instead of the full Jacobian (for big inputs).
    pub fast_mode: bool,
    /// Seeds the random directions of fast mode and the upstream gradient of the
    /// determinism check.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            fast_mode: false,
            seed: 0,
        }
    }
}

/// The number of random direction pairs compared in fast mode.
const FAST_PAIRS: usize = 2;

/// The most Jacobian entries (all inputs together) full mode stores (8 bytes each).
const MAX_FULL_ENTRIES: usize = 1 << 26;

/// Checks the gradients of `f` at `inputs` against central finite differences, like
/// `torch.autograd.gradcheck`.
///
/// Full mode compares every Jacobian entry `d y_j / d x_i`: the analytic one from a backward with
/// the one-hot upstream gradient `e_j`, the numeric one from `(f(x + eps e_i) - f(x - eps e_i)) /
/// (2 eps)`; each must satisfy `|analytic - numeric| <= atol + rtol * |numeric|`. It costs
/// `numel(output)` backward passes and `2 * numel(input)` forwards per input. Fast mode compares
/// `v^T J u` for two pairs of random unit directions
/// instead. Before either, it checks that `f` is finite at `inputs`, that gradients have their
/// inputs' shapes, that two identical forward + backward runs give bit-identical gradients, and
/// that a zero upstream gradient gives zero gradients.
///
/// It works in f64 because the central difference's error is O(eps^2) (truncation) plus
/// O(u |f| / eps) (rounding, `u` the unit roundoff): with eps = 1e-6 that is about 1e-12 + 1e-10
/// in f64, far below atol = 1e-5, but about 0.06 in f32. Pick inputs at least eps away from kinks
/// (relu or abs at 0, max ties), where the numeric derivative averages both sides.
///
/// `f` may return any shape. `inputs` are only read: gradcheck builds fresh leaves that require
/// grad from copies of their data and calls `f` on those, as often as it needs a fresh graph.
/// Returns a [`GradcheckReport`] if every check passes, `Err(Error::Gradcheck)` naming the input,
/// the element, the analytic and numeric values, their errors and the tolerance otherwise, and
/// `f`'s own error (with a note that it came from `f`) if `f` fails.
///
/// ```
/// use smallgrad::{gradcheck, GradcheckOptions, Tensor, Device};
/// let x = Tensor::<f64>::from_vec(vec![0.3, -1.2, 2.0], &[3], Device::Cpu)?;
/// // d/dx sum(x * tanh(x)) = tanh(x) + x (1 - tanh(x)^2)
/// let report = gradcheck(|t| t[0].mul(&t[0].tanh()?)?.sum(), &[x.clone()], &GradcheckOptions::default())?;
/// assert!(report.inputs[0].max_abs_err < 1e-6);
/// println!("{report}");
///
/// // A gradient cut by `detach`: analytic x, numeric 2x. gradcheck finds it.
/// let err = gradcheck(|t| t[0].mul(&t[0].detach())?.sum(), &[x], &GradcheckOptions::default());
/// assert!(err.unwrap_err().to_string().contains("input 0"));
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub fn gradcheck(
    f: impl Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
    inputs: &[Tensor<f64>],
    opts: &GradcheckOptions,
) -> Result<GradcheckReport> {
    validate(inputs, opts)?;
    let mut c = Checker {
        f: &f,
        datas: inputs.iter().map(|t| t.to_vec()).collect::<Result<_>>()?,
        shapes: inputs.iter().map(|t| t.shape().to_vec()).collect(),
        devices: inputs.iter().map(|t| t.device()).collect(),
        out_shape: Vec::new(),
        shape_known: false,
        forward_calls: 0,
        backward_calls: 0,
    };
    // The unperturbed output: its shape fixes the Jacobian's rows; it must be finite.
    let y0 = c.call(None, false, "at the given inputs")?;
    c.out_shape = y0.shape().to_vec();
    c.shape_known = true;
    let y0 = y0.to_vec()?;
    if let Some(j) = y0.iter().position(|v| !v.is_finite()) {
        return Err(gc(format!(
            "f's output is not finite at the given inputs: output element {:?} is {}. Finite \
             differences need a finite function; choose inputs inside its domain.",
            unravel(j, &c.out_shape),
            y0[j]
        )));
    }
    c.structural_checks(opts.seed)?;
    let reports = if opts.fast_mode { c.fast(opts)? } else { c.full(opts)? };
    let failed: Vec<&Outcome> = reports.iter().filter(|o| o.failures > 0).collect();
    if !failed.is_empty() {
        let blocks: Vec<String> = failed
            .iter()
            .map(|o| describe_failure(o, opts, &c.shapes[o.report.input], &c.out_shape))
            .collect();
        return Err(gc(blocks.join("\n")));
    }
    Ok(GradcheckReport {
        inputs: reports.into_iter().map(|o| o.report).collect(),
        output_shape: c.out_shape,
        options: opts.clone(),
        forward_calls: c.forward_calls,
        backward_calls: c.backward_calls,
    })
}

fn gc(msg: String) -> Error {
    Error::Gradcheck { msg }
}

fn validate(inputs: &[Tensor<f64>], opts: &GradcheckOptions) -> Result<()> {
    let bad = |msg: String| Err(Error::invalid("gradcheck", msg));
    if inputs.is_empty() {
        return bad("needs at least one input to check, got none".into());
    }
    if !(opts.eps > 0.0 && opts.eps.is_finite()) {
        return bad(format!("eps must be finite and > 0, got {}", opts.eps));
    }
    if !(opts.atol >= 0.0 && opts.rtol >= 0.0) {
        return bad(format!(
            "atol and rtol must be >= 0, got atol {} and rtol {}",
            opts.atol, opts.rtol
        ));
    }
    if !crate::autograd::is_grad_enabled() {
        return bad("called inside no_grad: analytic gradients need grad mode on".into());
    }
    Ok(())
}

/// A unit vector of `n` standard normals (all zeros if `n == 0`).
fn unit_direction(n: usize, rng: &mut Rng) -> Vec<f64> {
    let mut d: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        d.iter_mut().for_each(|v| *v /= norm);
    }
    d
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The state of one gradcheck run: private copies of the inputs and call counters.
struct Checker<'a, F> {
    f: &'a F,
    datas: Vec<Vec<f64>>,
    shapes: Vec<Vec<usize>>,
    devices: Vec<Device>,
    out_shape: Vec<usize>,
    shape_known: bool,
    forward_calls: usize,
    backward_calls: usize,
}

impl<F: Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>> Checker<'_, F> {
    /// Fresh leaves (requiring grad if `grad`), input `k` replaced by `data` if given, and
    /// `f` called on them (under `no_grad` unless `grad`).
    fn call(&mut self, replace: Option<(usize, &[f64])>, grad: bool, ctx: &str) -> Result<Tensor<f64>> {
        self.call_leaves(replace, grad, ctx).map(|(y, _)| y)
    }

    fn call_leaves(
        &mut self,
        replace: Option<(usize, &[f64])>,
        grad: bool,
        ctx: &str,
    ) -> Result<(Tensor<f64>, Vec<Tensor<f64>>)> {
        let mut leaves = Vec::with_capacity(self.datas.len());
        for (k, data) in self.datas.iter().enumerate() {
            let data = match replace {
                Some((r, d)) if r == k => d.to_vec(),
                _ => data.clone(),
            };
            let t = Tensor::from_vec(data, &self.shapes[k], self.devices[k])?;
            leaves.push(if grad { t.requires_grad() } else { t });
        }
        self.forward_calls += 1;
        let y = if grad {
            (self.f)(&leaves)
        } else {
            no_grad(|| (self.f)(&leaves))
        };
        let y = y.map_err(|e| e.context(format!("raised by f {ctx}, called by gradcheck")))?;
        // The first call fixes the output shape; from then on f must keep it.
        if self.shape_known && y.shape() != self.out_shape.as_slice() {
            return Err(gc(format!(
                "f returned shape {:?} {ctx} but {:?} at the given inputs; f must return the same \
                 shape on every call",
                y.shape(),
                self.out_shape
            )));
        }
        Ok((y, leaves))
    }

    /// The vector-Jacobian product: the gradient of every input for upstream gradient `v`
    /// (flat, output-shaped), from a fresh forward and one backward. A gradient that stays
    /// `None` counts as zeros.
    fn vjp(&mut self, v: &[f64], ctx: &str) -> Result<Vec<Vec<f64>>> {
        let (y, leaves) = self.call_leaves(None, true, ctx)?;
        if y.is_requires_grad() {
            let vt = Tensor::from_vec(v.to_vec(), &self.out_shape, y.device())?;
            self.backward_calls += 1;
            y.backward_with(&vt)
                .map_err(|e| e.context(format!("raised in backward {ctx}, called by gradcheck")))?;
        }
        let mut grads = Vec::with_capacity(leaves.len());
        for (k, leaf) in leaves.iter().enumerate() {
            match leaf.grad() {
                None => grads.push(vec![0.0; self.datas[k].len()]),
                Some(g) if g.shape() != self.shapes[k].as_slice() => {
                    return Err(gc(format!(
                        "input {k}: its gradient has shape {:?} but the input has shape {:?}; a \
                         backward must return one gradient per input, with that input's shape",
                        g.shape(),
                        self.shapes[k]
                    )));
                }
                Some(g) => grads.push(g.to_vec()?),
            }
        }
        Ok(grads)
    }

    /// Determinism (bit-identical gradients from two identical runs), gradient shapes (inside
    /// `vjp`), and linearity at zero (zero upstream gradient, zero gradients).
    fn structural_checks(&mut self, seed: u64) -> Result<()> {
        let m = numel(&self.out_shape);
        let mut rng = Rng::new(seed ^ 0x6772_6164_6368_6563); // "gradchec"
        let v: Vec<f64> = (0..m).map(|_| rng.normal()).collect();
        let g1 = self.vjp(&v, "(determinism check, run 1)")?;
        let g2 = self.vjp(&v, "(determinism check, run 2)")?;
        for (k, (a, b)) in g1.iter().zip(&g2).enumerate() {
            if let Some(i) = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits()) {
                return Err(gc(format!(
                    "input {k}: two identical forward + backward runs (same inputs, same upstream \
                     gradient) gave different gradients at element {:?}: {:e} then {:e}.\n  \
                     Gradients must be bit-identical run to run: look for a reduction whose order \
                     depends on threads, state kept between calls, or a backward that reads a \
                     tensor modified since the forward.",
                    unravel(i, &self.shapes[k]),
                    a[i],
                    b[i]
                )));
            }
        }
        let gz = self.vjp(&vec![0.0; m], "(zero upstream gradient check)")?;
        for (k, g) in gz.iter().enumerate() {
            if let Some(i) = g.iter().position(|x| *x != 0.0) {
                return Err(gc(format!(
                    "input {k}: a zero upstream gradient gave the nonzero gradient {:e} at element \
                     {:?}.\n  A backward must be linear in its upstream gradient (grad_in = g * \
                     local derivative); a constant added, or 0 * inf = NaN, breaks that.",
                    g[i],
                    unravel(i, &self.shapes[k])
                )));
            }
        }
        Ok(())
    }

    /// `(f(x_k + eps d) - f(x_k - eps d)) / (2 eps)`, flat over the output.
    fn central_difference(&mut self, k: usize, d: &[f64], eps: f64, what: &str) -> Result<Vec<f64>> {
        let plus: Vec<f64> = self.datas[k].iter().zip(d).map(|(x, di)| x + eps * di).collect();
        let minus: Vec<f64> = self.datas[k].iter().zip(d).map(|(x, di)| x - eps * di).collect();
        let fp = self
            .call(Some((k, &plus)), false, &format!("at input {k} + eps * {what}"))?
            .to_vec()?;
        let fm = self
            .call(Some((k, &minus)), false, &format!("at input {k} - eps * {what}"))?
            .to_vec()?;
        Ok(fp.iter().zip(&fm).map(|(p, q)| (p - q) / (2.0 * eps)).collect())
    }

    /// Full mode: every Jacobian entry of every input.
    fn full(&mut self, o: &GradcheckOptions) -> Result<Vec<Outcome>> {
        let m = numel(&self.out_shape);
        let entries = self
            .datas
            .iter()
            .try_fold(0usize, |acc, d| acc.checked_add(m.checked_mul(d.len())?));
        if entries.is_none_or(|e| e > MAX_FULL_ENTRIES) {
            return Err(Error::invalid(
                "gradcheck",
                format!(
                    "the full Jacobians ({m} outputs x {:?} input elements) are too big for full mode \
                     (limit {MAX_FULL_ENTRIES} entries); use fast_mode: true",
                    self.datas.iter().map(Vec::len).collect::<Vec<_>>()
                ),
            ));
        }
        // Analytic rows: jac[k][j * n_k + i] = d y_j / d x_{k,i}.
        let mut jac: Vec<Vec<f64>> = self.datas.iter().map(|d| Vec::with_capacity(m * d.len())).collect();
        let mut onehot = vec![0.0; m];
        for j in 0..m {
            onehot[j] = 1.0;
            let ctx = format!("(analytic Jacobian, output element {:?})", unravel(j, &self.out_shape));
            let grads = self.vjp(&onehot, &ctx)?;
            onehot[j] = 0.0;
            for (row, g) in jac.iter_mut().zip(grads) {
                row.extend(g);
            }
        }
        let mut outcomes = Vec::with_capacity(self.datas.len());
        for (k, jac_k) in jac.iter().enumerate() {
            let n = self.datas[k].len();
            let mut oc = Outcome::new(k, &self.shapes[k], false);
            let mut e_i = vec![0.0; n];
            for i in 0..n {
                e_i[i] = 1.0;
                let col = self.central_difference(k, &e_i, o.eps, &format!("e_{:?}", unravel(i, &self.shapes[k])))?;
                e_i[i] = 0.0;
                for (j, numeric) in col.into_iter().enumerate() {
                    oc.add(
                        Entry {
                            analytic: jac_k[j * n + i],
                            numeric,
                            elem: i,
                            out: j,
                        },
                        o,
                    );
                }
            }
            if oc.report.checked > 0 {
                oc.report.worst_element = Some(unravel(oc.worst.elem, &self.shapes[k]));
                oc.report.worst_output = Some(unravel(oc.worst.out, &self.out_shape));
            }
            outcomes.push(oc);
        }
        Ok(outcomes)
    }

    /// Fast mode: `v^T J u` for a few random unit direction pairs, one input at a time.
    fn fast(&mut self, o: &GradcheckOptions) -> Result<Vec<Outcome>> {
        let m = numel(&self.out_shape);
        let mut rng = Rng::new(o.seed);
        let mut outcomes: Vec<Outcome> = self
            .shapes
            .iter()
            .enumerate()
            .map(|(k, s)| Outcome::new(k, s, true))
            .collect();
        if m == 0 {
            return Ok(outcomes);
        }
        for p in 0..FAST_PAIRS {
            let v = unit_direction(m, &mut rng);
            let us: Vec<Vec<f64>> = self.datas.iter().map(|d| unit_direction(d.len(), &mut rng)).collect();
            let grads = self.vjp(&v, &format!("(fast mode, direction pair {p})"))?;
            for (k, u) in us.iter().enumerate() {
                if u.is_empty() {
                    continue;
                }
                let diff = self.central_difference(k, u, o.eps, &format!("u (direction pair {p})"))?;
                let entry = Entry {
                    analytic: dot(&grads[k], u),
                    numeric: dot(&v, &diff),
                    elem: p,
                    out: 0,
                };
                outcomes[k].add(entry, o);
            }
        }
        for oc in outcomes.iter_mut().filter(|oc| oc.report.checked > 0) {
            oc.report.worst_direction = Some(oc.worst.elem);
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests;
