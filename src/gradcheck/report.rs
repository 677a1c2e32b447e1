//! What [`gradcheck`](fn@super::gradcheck)(super::gradcheck) reports: per input, how far the analytic values were from
//! the numeric ones ([`InputReport`], [`GradcheckReport`] and its table), and, when a check
//! fails, the message a learner reads — the worst entry, both values, both errors, the tolerance
//! and a hint when the pattern is a familiar one. The algorithm is in `mod.rs`.

use super::GradcheckOptions;
use crate::shape::unravel;
use std::fmt;

/// How well one input's analytic gradient matched finite differences.
///
/// The "worst" entry is the one with the largest error relative to its tolerance,
/// `|analytic - numeric| / (atol + rtol * |numeric|)`: the entry closest to failing.
#[derive(Debug, Clone, PartialEq)]
pub struct InputReport {
    /// The position of this input in `inputs`.
    pub input: usize,
    /// The input's shape.
    pub shape: Vec<usize>,
    /// True if checked by random projections (fast mode), false if entry by entry.
    pub fast_mode: bool,
    /// How many values were compared: Jacobian entries (`numel(input) * numel(output)`) in full
    /// mode, direction pairs in fast mode.
    pub checked: usize,
    /// The largest `|analytic - numeric|`.
    pub max_abs_err: f64,
    /// The largest `|analytic - numeric| / |numeric|` over the entries with a nonzero numeric
    /// value (0 if there are none).
    pub max_rel_err: f64,
    /// The worst entry's error divided by its tolerance (<= 1 means it passed).
    pub worst_ratio: f64,
    /// Full mode: the input element of the worst entry (`None` in fast mode or if nothing was
    /// checked).
    pub worst_element: Option<Vec<usize>>,
    /// Full mode: the output element of the worst entry.
    pub worst_output: Option<Vec<usize>>,
    /// Fast mode: the direction pair (0-based) of the worst entry.
    pub worst_direction: Option<usize>,
    /// The analytic value of the worst entry.
    pub worst_analytic: f64,
    /// The numeric value of the worst entry.
    pub worst_numeric: f64,
}

/// The result of a passing [`gradcheck`](fn@super::gradcheck): one [`InputReport`] per input, and what it cost.
/// `Display` prints a short table.
#[derive(Debug, Clone, PartialEq)]
pub struct GradcheckReport {
    /// One report per input, in order.
    pub inputs: Vec<InputReport>,
    /// The shape of `f`'s output.
    pub output_shape: Vec<usize>,
    /// The options the check ran with.
    pub options: GradcheckOptions,
    /// How many times `f` was called.
    pub forward_calls: usize,
    /// How many backward passes ran.
    pub backward_calls: usize,
}

/// One compared value: where it is and how far apart analytic and numeric are.
#[derive(Clone, Copy, Default)]
pub(super) struct Entry {
    pub(super) analytic: f64,
    pub(super) numeric: f64,
    /// Flat input element (full mode) or direction pair (fast mode).
    pub(super) elem: usize,
    /// Flat output element (full mode).
    pub(super) out: usize,
}

impl Entry {
    pub(super) fn abs(&self) -> f64 {
        (self.analytic - self.numeric).abs()
    }
    pub(super) fn allowed(&self, o: &GradcheckOptions) -> f64 {
        o.atol + o.rtol * self.numeric.abs()
    }
    pub(super) fn rel(&self) -> Option<f64> {
        (self.numeric != 0.0).then(|| self.abs() / self.numeric.abs())
    }
    /// Error / tolerance; NaN anywhere counts as infinitely bad.
    pub(super) fn ratio(&self, o: &GradcheckOptions) -> f64 {
        let (err, tol) = (self.abs(), self.allowed(o));
        if err.is_nan() || tol.is_nan() {
            f64::INFINITY
        } else if tol == 0.0 {
            if err == 0.0 { 0.0 } else { f64::INFINITY }
        } else {
            err / tol
        }
    }
}

/// One input's running statistics while its entries are compared.
pub(super) struct Outcome {
    pub(super) report: InputReport,
    pub(super) worst: Entry,
    pub(super) failures: usize,
}

impl Outcome {
    pub(super) fn new(input: usize, shape: &[usize], fast_mode: bool) -> Self {
        let report = InputReport {
            input,
            shape: shape.to_vec(),
            fast_mode,
            checked: 0,
            max_abs_err: 0.0,
            max_rel_err: 0.0,
            worst_ratio: 0.0,
            worst_element: None,
            worst_output: None,
            worst_direction: None,
            worst_analytic: 0.0,
            worst_numeric: 0.0,
        };
        Outcome {
            report,
            worst: Entry::default(),
            failures: 0,
        }
    }

    pub(super) fn add(&mut self, e: Entry, o: &GradcheckOptions) {
        let r = &mut self.report;
        let ratio = e.ratio(o);
        r.max_abs_err = r
            .max_abs_err
            .max(if e.abs().is_nan() { f64::INFINITY } else { e.abs() });
        if let Some(rel) = e.rel() {
            r.max_rel_err = r.max_rel_err.max(if rel.is_nan() { f64::INFINITY } else { rel });
        }
        if ratio > 1.0 {
            self.failures += 1;
        }
        if r.checked == 0 || ratio > r.worst_ratio {
            r.worst_ratio = ratio;
            r.worst_analytic = e.analytic;
            r.worst_numeric = e.numeric;
            self.worst = e;
        }
        r.checked += 1;
    }
}

/// The message a learner reads: where the worst mismatch of one input is, both values,
/// both errors, the tolerance, and a hint when the pattern is a familiar one.
pub(super) fn describe_failure(oc: &Outcome, o: &GradcheckOptions, in_shape: &[usize], out_shape: &[usize]) -> String {
    let r = &oc.report;
    let e = oc.worst;
    let k = r.input;
    let what = if r.fast_mode {
        "random projections v^T J u"
    } else {
        "Jacobian entries"
    };
    let mut s = format!(
        "input {k} (shape {:?}): analytic and numeric gradients differ at {} of {} {what}; \
         the worst:\n",
        r.shape, oc.failures, r.checked
    );
    if r.fast_mode {
        s += &format!(
            "  where:     direction pair {} (random unit u over input {k}, v over the output)\n",
            e.elem
        );
    } else {
        s += &format!("  element:   input {k} element {:?}", unravel(e.elem, in_shape));
        if !out_shape.is_empty() {
            s += &format!(", output element {:?}", unravel(e.out, out_shape));
        }
        s += "\n";
    }
    let rel = e
        .rel()
        .map_or("undefined (numeric is 0)".to_string(), |r| format!("{r:.3e}"));
    s += &format!("  analytic:  {:.9e}\n", e.analytic);
    s += &format!("  numeric:   {:.9e}\n", e.numeric);
    s += &format!("  abs error: {:.3e}\n", e.abs());
    s += &format!("  rel error: {rel}\n");
    s += &format!(
        "  tolerance: atol + rtol * |numeric| = {:e} + {:e} * {:.3e} = {:.3e}  (eps {:e})",
        o.atol,
        o.rtol,
        e.numeric.abs(),
        e.allowed(o),
        o.eps
    );
    if let Some(h) = hint(&e, r.fast_mode) {
        s += &format!("\n  hint: {h}");
    }
    s
}

fn hint(e: &Entry, fast_mode: bool) -> Option<&'static str> {
    let (a, n) = (e.analytic, e.numeric);
    if !n.is_finite() {
        return Some("the numeric value is not finite: f is not finite within eps of this point");
    }
    if !a.is_finite() {
        return Some("the analytic gradient is not finite: check divisions and logs in the backward");
    }
    if fast_mode {
        return Some("rerun with fast_mode: false to find the failing element");
    }
    if a == 0.0 {
        return Some(
            "the analytic gradient is exactly 0: no gradient reaches this input here (a detach, \
             a no_grad, or a backward returning None?), or the point sits on a kink (relu at 0, \
             a max tie) where the numeric value averages the two one-sided slopes",
        );
    }
    let q = a / n;
    if (q - 0.5).abs() < 0.01 || (q - 2.0).abs() < 0.02 {
        return Some(
            "off by a factor of 2: a contribution missing or counted twice (x used twice?), or a \
             kink (relu at 0, a max tie) where the numeric value averages two one-sided slopes",
        );
    }
    if (q + 1.0).abs() < 0.01 {
        return Some("the sign is flipped");
    }
    None
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "gradcheck passed ({} mode, eps {:e}, atol {:e}, rtol {:e}); output shape {:?}; {} forward, {} backward passes",
            if o.fast_mode { "fast" } else { "full" },
            o.eps,
            o.atol,
            o.rtol,
            self.output_shape,
            self.forward_calls,
            self.backward_calls
        )?;
        writeln!(
            f,
            "input  {:<14} {:>8} {:>12} {:>12} {:>9}  worst at",
            "shape", "checked", "max abs err", "max rel err", "err/tol"
        )?;
        for r in &self.inputs {
            let at = match (&r.worst_element, &r.worst_output, r.worst_direction) {
                (Some(e), Some(y), _) if y.is_empty() => format!("x{e:?}"),
                (Some(e), Some(y), _) => format!("x{e:?} -> y{y:?}"),
                (_, _, Some(p)) => format!("direction pair {p}"),
                _ => "-".to_string(),
            };
            writeln!(
                f,
                "{:>5}  {:<14} {:>8} {:>12.3e} {:>12.3e} {:>9.2e}  {at}",
                r.input,
                format!("{:?}", r.shape),
                r.checked,
                r.max_abs_err,
                r.max_rel_err,
                r.worst_ratio
            )?;
        }
        Ok(())
    }
}
