//! [`Error`] and [`Result`]: every fallible call in smallgrad returns `Result<_, Error>`.
//!
//! Messages name the operation, the shapes or values given, and what was expected, e.g.
//! `matmul: inner dimensions differ: [2, 3] x [4, 5] (expected lhs.shape[1] == rhs.shape[0])`.

use std::fmt;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in smallgrad. IEEE value-domain results (`log(-1)` = NaN) are
/// not errors, exactly as in PyTorch.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Shapes, ranks or dimensions that do not fit the operation.
    Shape {
        /// The operation that rejected its input.
        op: &'static str,
        /// What was given and what was expected.
        msg: String,
    },
    /// A parameter out of its range (a stride of 0, a target class >= num_classes, ...).
    InvalidArgument {
        /// The operation that rejected its input.
        op: &'static str,
        /// What was given and what was expected.
        msg: String,
    },
    /// A device that is not available, or tensors on two different devices.
    Device {
        /// What went wrong.
        msg: String,
    },
    /// A misuse of the autograd graph (second backward through a freed graph, a saved tensor
    /// modified in place, backward on a tensor that does not require grad, ...).
    Autograd {
        /// What went wrong.
        msg: String,
    },
    /// `gradcheck` found an analytic gradient that disagrees with finite differences, or a
    /// structural check failed.
    Gradcheck {
        /// The full report: input index, element, analytic, numeric, absolute and relative error.
        msg: String,
    },
    /// Reading or writing a file failed, or its contents are malformed.
    Io {
        /// The file (or stream) involved.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// A NaN or infinity found by [`detect_anomaly`](crate::detect_anomaly): names the op,
    /// forward or backward, and where the op was called.
    Anomaly {
        /// The op, the value, where in its output, and the caller's source location.
        msg: String,
    },
    /// A device allocation failed.
    OutOfMemory {
        /// What was requested.
        msg: String,
    },
}

impl Error {
    pub(crate) fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }
    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument { op, msg: msg.into() }
    }
    pub(crate) fn autograd(msg: impl Into<String>) -> Self {
        Error::Autograd { msg: msg.into() }
    }
    pub(crate) fn device(msg: impl Into<String>) -> Self {
        Error::Device { msg: msg.into() }
    }

    /// The message of whichever variant this is.
    fn msg_mut(&mut self) -> &mut String {
        match self {
            Error::Shape { msg, .. }
            | Error::InvalidArgument { msg, .. }
            | Error::Device { msg }
            | Error::Autograd { msg }
            | Error::Gradcheck { msg }
            | Error::Io { msg, .. }
            | Error::Anomaly { msg }
            | Error::OutOfMemory { msg } => msg,
        }
    }

    /// The same error (same kind, same op or path) with `note` added to its message: the one way
    /// the crate says where an error passed through.
    pub(crate) fn context(mut self, note: impl fmt::Display) -> Self {
        let m = self.msg_mut();
        m.push_str(&format!(" ({note})"));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, msg } => write!(f, "{op}: shape error: {msg}"),
            Error::InvalidArgument { op, msg } => write!(f, "{op}: invalid argument: {msg}"),
            Error::Device { msg } => write!(f, "device error: {msg}"),
            Error::Autograd { msg } => write!(f, "autograd error: {msg}"),
            Error::Gradcheck { msg } => write!(f, "gradcheck failed: {msg}"),
            Error::Io { path, msg } => write!(f, "{path}: {msg}"),
            Error::OutOfMemory { msg } => write!(f, "out of memory: {msg}"),
            Error::Anomaly { msg } => write!(f, "anomaly detected: {msg}"),
        }
    }
}

impl std::error::Error for Error {}
