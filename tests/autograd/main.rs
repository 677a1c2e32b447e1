//! The graph: accumulation, no_grad, retain_grad, reused nodes, release after backward, saved state, tracing and anomaly hooks.
//!
//! One test binary per theme (docs/testing.md); each file below is one module of it.

mod graph_release;
mod instrument;
mod saved;
mod structural;
mod trace;
