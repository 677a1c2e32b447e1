//! Which CPU kernels run: the readable reference kernels or the fast ones.
//!
//! Every op family with a fast CPU kernel (conv2d, matmul, batch norm) also keeps its textbook
//! kernel in `ops/<family>/reference.rs` (and the GEMM its triple loop in
//! `backend/cpu/gemm/reference.rs`). Those are the kernels to read first, and the fast kernels'
//! test oracle. The whole engine runs on them when asked:
//!
//! - `SMALLGRAD_KERNELS=reference` (or `fast`, the default) in the environment, read once, on
//!   the first op that asks;
//! - [`set_kernels`] for the whole process, from then on;
//! - [`with_kernels`] for the ops issued by one closure on the calling thread (what tests use:
//!   it does not disturb other threads).
//!
//! The choice is read on the thread that issues an op (in its forward or backward), never
//! inside a kernel's worker threads, so a [`with_kernels`] scope covers everything its ops do.
//! Both kinds compute the same mathematics; their results differ in rounding only (they sum in
//! different orders), and each is deterministic on its own.
//!
//! ```
//! use smallgrad::cpu::{Kernels, with_kernels};
//! use smallgrad::{Device, Tensor};
//! let a = Tensor::<f64>::randn(&[3, 4], 0, Device::Cpu)?;
//! let b = Tensor::<f64>::randn(&[4, 2], 1, Device::Cpu)?;
//! let fast = a.matmul(&b)?.to_vec()?;
//! let reference = with_kernels(Kernels::Reference, || a.matmul(&b))?.to_vec()?;
//! for (x, y) in fast.iter().zip(&reference) {
//!     assert!((x - y).abs() < 1e-12);
//! }
//! # Ok::<(), smallgrad::Error>(())
//! ```

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

/// The two sets of CPU kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernels {
    /// The optimised kernels (packed SIMD GEMM, convolutions on the wide grid): the default.
    Fast,
    /// The textbook kernels: direct loops, im2col + a triple-loop GEMM, two-pass batch norm.
    /// Slow (tens of times on a ResNet), and written to be read.
    Reference,
}

impl Kernels {
    /// Parses the value of `SMALLGRAD_KERNELS`: `fast` or `reference` (case-insensitive).
    pub fn parse(value: &str) -> crate::Result<Kernels> {
        match value.trim().to_ascii_lowercase().as_str() {
            "fast" => Ok(Kernels::Fast),
            "reference" => Ok(Kernels::Reference),
            other => Err(crate::Error::invalid(
                "SMALLGRAD_KERNELS",
                format!("expected `fast` or `reference`, got `{other}`"),
            )),
        }
    }

    /// The choice `SMALLGRAD_KERNELS` makes: `Ok(None)` when it is unset, `Err` when it holds
    /// anything but `fast` or `reference`. (Programs that want a bad value to stop them call
    /// this at start; the library itself falls back to [`Kernels::Fast`] with a warning.)
    pub fn from_env() -> crate::Result<Option<Kernels>> {
        match std::env::var("SMALLGRAD_KERNELS") {
            Ok(v) => Kernels::parse(&v).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(crate::Error::invalid(
                "SMALLGRAD_KERNELS",
                "the value is not valid UTF-8",
            )),
        }
    }
}

/// 0 = not read from the environment yet, 1 = fast, 2 = reference.
static GLOBAL: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// A [`with_kernels`] scope's choice on this thread.
    static SCOPED: Cell<Option<Kernels>> = const { Cell::new(None) };
}

fn encode(k: Kernels) -> u8 {
    match k {
        Kernels::Fast => 1,
        Kernels::Reference => 2,
    }
}

/// The kernels an op issued now on this thread runs: the innermost [`with_kernels`] scope's,
/// else the process-wide choice ([`set_kernels`], or `SMALLGRAD_KERNELS`, or fast).
pub fn kernels() -> Kernels {
    if let Some(k) = SCOPED.with(Cell::get) {
        return k;
    }
    match GLOBAL.load(Ordering::Relaxed) {
        1 => Kernels::Fast,
        2 => Kernels::Reference,
        _ => {
            let k = Kernels::from_env().unwrap_or_else(|e| {
                eprintln!("smallgrad: {e}; using the fast kernels");
                None
            });
            let k = k.unwrap_or(Kernels::Fast);
            // A concurrent `set_kernels` wins over the environment.
            let _ = GLOBAL.compare_exchange(0, encode(k), Ordering::Relaxed, Ordering::Relaxed);
            kernels()
        }
    }
}

/// Makes every thread's ops run on `k` from now on (outside [`with_kernels`] scopes).
pub fn set_kernels(k: Kernels) {
    GLOBAL.store(encode(k), Ordering::Relaxed);
}

/// Runs `f` with the ops it issues on this thread using kernels `k`, then restores the
/// previous choice (also when `f` panics).
pub fn with_kernels<R>(k: Kernels, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Kernels>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SCOPED.with(|s| s.replace(Some(k))));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_names_and_rejects_others() {
        assert_eq!(Kernels::parse("fast").unwrap(), Kernels::Fast);
        assert_eq!(Kernels::parse(" Reference ").unwrap(), Kernels::Reference);
        let e = Kernels::parse("simd").unwrap_err().to_string();
        assert!(e.contains("SMALLGRAD_KERNELS") && e.contains("simd"), "{e}");
    }

    #[test]
    fn scopes_nest_and_restore() {
        let outer = kernels();
        with_kernels(Kernels::Reference, || {
            assert_eq!(kernels(), Kernels::Reference);
            with_kernels(Kernels::Fast, || assert_eq!(kernels(), Kernels::Fast));
            assert_eq!(kernels(), Kernels::Reference);
        });
        assert_eq!(kernels(), outer);
        let r = std::panic::catch_unwind(|| with_kernels(Kernels::Reference, || panic!("inside")));
        assert!(r.is_err());
        assert_eq!(kernels(), outer);
    }
}
