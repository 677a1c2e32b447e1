//! Looking inside a computation: tracing (`SMALLGRAD_TRACE=1`), a per-op [`profile`], and
//! [`detect_anomaly`] (NaN or infinity becomes an `Err` naming the op and where it was called).
//!
//! All three hook into the two places every op passes through: [`crate::autograd`]'s `record`
//! (the end of every forward op, even under `no_grad`) and the backward engine (around each
//! node's backward). A forward op's time runs from its first read of input data to its
//! `record`. The state is per thread; with everything off, the hooks cost one thread-local
//! flag check per op.

use crate::dtype::Float;
use crate::{Error, Result, Tensor};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Forward or backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// The op's forward computation.
    Forward,
    /// The op's backward (inside `backward()`).
    Backward,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Forward => "forward",
            Phase::Backward => "backward",
        })
    }
}

/// Calls and total time per (op, phase).
type Tally = HashMap<(&'static str, Phase), (u64, Duration)>;

#[derive(Default)]
struct State {
    profile: Option<Tally>,
    anomaly: bool,
    /// The first anomaly seen while `detect_anomaly` is on.
    found: Option<Error>,
}

thread_local! {
    /// True when any of trace / profile / anomaly is on (the fast-path check).
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static OP_START: Cell<Option<Instant>> = const { Cell::new(None) };
    static IN_BACKWARD: Cell<bool> = const { Cell::new(false) };
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn trace_env() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var("SMALLGRAD_TRACE").is_ok_and(|v| !v.is_empty() && v != "0"))
}

fn refresh_active() {
    let on = trace_env() || STATE.with(|s| s.borrow().profile.is_some() || s.borrow().anomaly);
    ACTIVE.with(|a| a.set(on));
}

fn active() -> bool {
    // The environment is read once; the flag is refreshed when profile/anomaly mode changes.
    if trace_env() {
        return true;
    }
    ACTIVE.with(|a| a.get())
}

/// Called when an op first reads its input data: the start of its forward time.
#[inline]
pub(crate) fn op_started() {
    if active() && !IN_BACKWARD.with(|b| b.get()) {
        OP_START.with(|s| {
            if s.get().is_none() {
                s.set(Some(Instant::now()));
            }
        });
    }
}

fn shapes<T: Float>(ts: &[&Tensor<T>]) -> String {
    ts.iter()
        .map(|t| format!("{:?}", t.shape()))
        .collect::<Vec<_>>()
        .join(" x ")
}

fn first_bad<T: Float>(t: &Tensor<T>) -> Option<(usize, T)> {
    let data = t.host_values().ok()?;
    data.iter().position(|v| !v.is_finite()).map(|i| (i, data[i]))
}

fn add_profile(name: &'static str, phase: Phase, took: Duration) {
    STATE.with(|s| {
        if let Some(p) = s.borrow_mut().profile.as_mut() {
            let e = p.entry((name, phase)).or_insert((0, Duration::ZERO));
            e.0 += 1;
            e.1 += took;
        }
    });
}

/// The end of a forward op (from `record`): trace, profile, and the anomaly check.
#[track_caller]
pub(crate) fn forward_done<T: Float>(name: &'static str, inputs: &[&Tensor<T>], out: &Tensor<T>) -> Result<()> {
    if !active() || IN_BACKWARD.with(|b| b.get()) {
        return Ok(());
    }
    let took = OP_START.with(|s| s.take()).map(|t| t.elapsed()).unwrap_or_default();
    if trace_env() {
        eprintln!(
            "[smallgrad trace] forward  {name:<20} {} -> {:?}  {:.3} ms",
            shapes(inputs),
            out.shape(),
            took.as_secs_f64() * 1e3
        );
    }
    add_profile(name, Phase::Forward, took);
    if STATE.with(|s| s.borrow().anomaly)
        && let Some((i, v)) = first_bad(out)
    {
        let loc = Location::caller();
        return Err(anomaly(format!(
            "forward of `{name}` produced {v} at flat index {i} of its output {:?} (inputs {}), \
             called at {}:{}:{}",
            out.shape(),
            shapes(inputs),
            loc.file(),
            loc.line(),
            loc.column()
        )));
    }
    Ok(())
}

fn anomaly(msg: String) -> Error {
    let e = Error::Anomaly { msg };
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.found.is_none() {
            s.found = Some(e.clone());
        }
    });
    e
}

/// Marks this thread as inside the backward engine for the guard's lifetime: ops run there
/// (backward formulas, gradient accumulation) are part of the backward, not forward ops.
pub(crate) struct EngineGuard(bool);

pub(crate) fn engine_scope() -> EngineGuard {
    EngineGuard(IN_BACKWARD.with(|b| b.replace(true)))
}

impl Drop for EngineGuard {
    fn drop(&mut self) {
        IN_BACKWARD.with(|b| b.set(self.0));
    }
}

/// Brackets one node's backward in the engine (its start time, when instrumenting).
pub(crate) struct BackwardScope {
    start: Option<Instant>,
}

pub(crate) fn backward_start() -> BackwardScope {
    BackwardScope {
        start: active().then(Instant::now),
    }
}

/// After one node's backward: trace, profile, and the anomaly check on its gradients.
pub(crate) fn backward_done<T: Float>(
    scope: BackwardScope,
    name: &'static str,
    created_at: Option<&'static Location<'static>>,
    grad: &Tensor<T>,
    grads: &[Option<Tensor<T>>],
) -> Result<()> {
    let Some(start) = scope.start else { return Ok(()) };
    let took = start.elapsed();
    if trace_env() {
        let outs: Vec<String> = grads
            .iter()
            .map(|g| g.as_ref().map_or("-".to_string(), |g| format!("{:?}", g.shape())))
            .collect();
        eprintln!(
            "[smallgrad trace] backward {name:<20} {:?} -> {}  {:.3} ms",
            grad.shape(),
            outs.join(", "),
            took.as_secs_f64() * 1e3
        );
    }
    add_profile(name, Phase::Backward, took);
    if STATE.with(|s| s.borrow().anomaly) {
        for (k, g) in grads.iter().enumerate() {
            if let Some((i, v)) = g.as_ref().and_then(first_bad) {
                let at = created_at.map_or(String::from("an unknown place"), |l| {
                    format!("{}:{}:{}", l.file(), l.line(), l.column())
                });
                return Err(anomaly(format!(
                    "backward of `{name}` produced {v} at flat index {i} of the gradient of its input {k} \
                     (shape {:?}); the op was called at {at}",
                    g.as_ref().map(|g| g.shape().to_vec()).unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// Whether `detect_anomaly` is on for this thread (ops then record where they were called).
pub(crate) fn anomaly_mode() -> bool {
    STATE.with(|s| s.borrow().anomaly)
}

/// Per-op time and call counts collected by [`profile`].
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// (op, phase, calls, total time), slowest first.
    pub rows: Vec<(&'static str, Phase, u64, Duration)>,
}

impl Profile {
    /// The total time of all ops.
    pub fn total(&self) -> Duration {
        self.rows.iter().map(|r| r.3).sum()
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total().as_secs_f64().max(1e-12);
        writeln!(
            f,
            "{:<22} {:<9} {:>8} {:>12} {:>7}",
            "op", "phase", "calls", "total ms", "share"
        )?;
        for (name, phase, calls, t) in &self.rows {
            writeln!(
                f,
                "{name:<22} {phase:<9} {calls:>8} {:>12.3} {:>6.1}%",
                t.as_secs_f64() * 1e3,
                100.0 * t.as_secs_f64() / total
            )?;
        }
        write!(
            f,
            "{:<22} {:<9} {:>8} {:>12.3} {:>6.1}%",
            "total",
            "",
            "",
            total * 1e3,
            100.0
        )
    }
}

/// Runs `f` and returns its value with a per-op table of calls and time (forward and backward
/// separately) of the ops it ran on this thread. Nested calls: the inner one collects its own.
///
/// ```
/// use smallgrad::{Device, Tensor, profile};
/// let x = Tensor::<f32>::randn(&[64, 64], 0, Device::Cpu)?.requires_grad();
/// let (r, prof) = profile(|| -> smallgrad::Result<()> { x.matmul(&x)?.relu()?.sum()?.backward() });
/// r?;
/// assert!(prof.rows.iter().any(|row| row.0 == "matmul"));
/// println!("{prof}");
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub fn profile<R>(f: impl FnOnce() -> R) -> (R, Profile) {
    let prev = STATE.with(|s| s.borrow_mut().profile.replace(HashMap::new()));
    refresh_active();
    struct Restore(Option<Option<Tally>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(prev) = self.0.take() {
                STATE.with(|s| s.borrow_mut().profile = prev);
                refresh_active();
            }
        }
    }
    let mut restore = Restore(Some(prev));
    let r = f();
    let collected = STATE.with(|s| s.borrow_mut().profile.take()).unwrap_or_default();
    if let Some(prev) = restore.0.take() {
        STATE.with(|s| s.borrow_mut().profile = prev);
        refresh_active();
    }
    let mut rows: Vec<_> = collected.into_iter().map(|((n, p), (c, t))| (n, p, c, t)).collect();
    rows.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(b.0)).then(a.1.cmp(&b.1)));
    (r, Profile { rows })
}

/// Runs `f` with anomaly detection on (this thread), as `torch.autograd.detect_anomaly`: the
/// first NaN or infinity produced by a forward op or a backward is an `Err` naming the op and
/// the place in your code where that op was called (recorded with `#[track_caller]` while the
/// mode is on). The erroring op returns the `Err` itself, so `?` stops `f` right there; if `f`
/// swallows it, `detect_anomaly` still returns it.
///
/// ```
/// use smallgrad::{Device, Tensor, detect_anomaly};
/// let x = Tensor::<f32>::from_vec(vec![1.0, -1.0], &[2], Device::Cpu)?;
/// let r = detect_anomaly(|| x.log()?.sum());       // log(-1) = NaN
/// let msg = r.unwrap_err().to_string();
/// assert!(msg.contains("`log`") && msg.contains("called at"), "{msg}");
/// # Ok::<(), smallgrad::Error>(())
/// ```
pub fn detect_anomaly<R>(f: impl FnOnce() -> Result<R>) -> Result<R> {
    let prev = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let prev = (s.anomaly, s.found.take());
        s.anomaly = true;
        prev
    });
    refresh_active();
    struct Restore(Option<(bool, Option<Error>)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some((a, found)) = self.0.take() {
                STATE.with(|s| {
                    let mut s = s.borrow_mut();
                    s.anomaly = a;
                    s.found = found;
                });
                refresh_active();
            }
        }
    }
    let restore = Restore(Some(prev));
    let r = f();
    let found = STATE.with(|s| s.borrow_mut().found.take());
    drop(restore);
    match (r, found) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => Err(e),
        (Ok(v), None) => Ok(v),
    }
}
