//! The operations: one folder (or file) per op family, each holding its public methods on
//! [`Tensor`](crate::Tensor), its backward next to its forward, and the derivation of the
//! backward in a comment. See `README.md` in this folder for the layout rule.

mod batchnorm;
pub(crate) mod conv;
pub(crate) mod elementwise;
mod matmul;
mod normalize;
mod pool;
mod reduce;
pub(crate) mod shape;
mod softmax;
