//! Elementwise ops: binary arithmetic with NumPy broadcasting, scalar arithmetic, and the
//! unary functions.
//!
//! # Backward
//! For `z = f(a, b)` applied elementwise over the broadcast shape, the chain rule gives
//! `dL/da = sum_to(dL/dz * df/da, a.shape)`: each element of `a` was used by every output
//! position it was broadcast to, so its gradient is the sum over those positions (`sum_to`).
//! - add: df/da = 1, df/db = 1
//! - sub: df/da = 1, df/db = -1
//! - mul: df/da = b, df/db = a
//! - div: df/da = 1/b, df/db = -a/b^2
//!
//! Unary `y = f(x)` gives `dL/dx = dL/dy * f'(x)`. Each unary op is defined once, in
//! [`unary`]: its f, its derivative written with whichever of x and y is cheaper, and what its
//! backward keeps (neg: -1; exp: y; log: 1/x; sqrt: 1/(2y); tanh: 1 - y^2; sigmoid: y(1 - y);
//! abs: sign(x), 0 at 0; relu: 1 if y > 0 else 0, so relu'(0) = 0; powf(p): p x^(p-1), 0 when
//! p = 0; clamp_min(m): 1 if x >= m else 0, as PyTorch; add_scalar: 1; mul_scalar(s): s).

mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub(crate) mod unary;

use crate::autograd::{Backward, Saved, record};
use crate::dtype::Float;
use crate::shape::broadcast_shapes;
use crate::{Result, Tensor};
use unary::{Abs, AddScalar, ClampMin, Exp, Log, MulScalar, Neg, Powf, Relu, Saves, Sigmoid, Sqrt, Tanh, UnaryOp};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

struct BinaryBackward<T: Float> {
    op: BinaryOp,
    a: Option<Saved<T>>,
    b: Option<Saved<T>>,
}

impl<T: Float> Backward<T> for BinaryBackward<T> {
    fn name(&self) -> &'static str {
        self.op.name()
    }

    fn backward(&self, g: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let (a_in, b_in) = (&inputs[0], &inputs[1]);
        let name = self.op.name();
        let ga = if a_in.is_requires_grad() {
            let full = match self.op {
                BinaryOp::Add | BinaryOp::Sub => g.clone(),
                BinaryOp::Mul => g.mul(self.b.as_ref().unwrap().get(name)?)?,
                BinaryOp::Div => g.div(self.b.as_ref().unwrap().get(name)?)?,
            };
            Some(full.sum_to(a_in.shape())?)
        } else {
            None
        };
        let gb = if b_in.is_requires_grad() {
            let full = match self.op {
                BinaryOp::Add => g.clone(),
                BinaryOp::Sub => g.neg()?,
                BinaryOp::Mul => g.mul(self.a.as_ref().unwrap().get(name)?)?,
                BinaryOp::Div => {
                    let (a, b) = (self.a.as_ref().unwrap().get(name)?, self.b.as_ref().unwrap().get(name)?);
                    // -g * a / b^2 over the broadcast shape: one fused pass on the CPU, four kernels on a GPU
                    on_device!(g.device(),
                        cuda => g.mul(&a.div(b)?)?.div(b)?.neg()?,
                        cpu => cpu::div_rhs_grad(g, a, b)?)
                }
            };
            Some(full.sum_to(b_in.shape())?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
}

/// The backward of a unary op: it keeps only what the op's derivative reads.
struct UnaryBackward<T: Float, O: UnaryOp<T>> {
    op: O,
    saved: Option<Saved<T>>,
}

impl<T: Float, O: UnaryOp<T>> Backward<T> for UnaryBackward<T, O> {
    fn name(&self) -> &'static str {
        O::NAME
    }

    fn backward(&self, g: &Tensor<T>, _inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let v = match &self.saved {
            Some(s) => Some(s.get(O::NAME)?),
            None => None,
        };
        let dx = on_device!(g.device(),
        cuda => cuda::unary_backward(self.op, v, g)?,
        cpu => {
            let v = match v {
                Some(v) => Some(v.values()?),
                None => None,
            };
            let data = cpu::unary_backward(self.op, v.as_deref(), &g.values()?);
            Tensor::from_cpu(data, g.shape().to_vec())
        });
        Ok(vec![Some(dx)])
    }
}

impl<T: Float> Tensor<T> {
    #[track_caller]
    fn binary(&self, other: &Tensor<T>, op: BinaryOp) -> Result<Tensor<T>> {
        self.same_device(op.name(), other)?;
        let shape = broadcast_shapes(op.name(), self.shape(), other.shape())?;
        let out = on_device!(self.device(),
        cuda => cuda::binary(op, self, other, &shape)?,
        cpu => {
            let data = cpu::binary(op, &self.values()?, self.shape(), &other.values()?, other.shape(), &shape);
            Tensor::from_cpu(data, shape)
        });
        let keep = matches!(op, BinaryOp::Mul | BinaryOp::Div);
        let bw = BinaryBackward {
            op,
            a: keep.then(|| Saved::new(self)),
            b: keep.then(|| Saved::new(other)),
        };
        record(out, &[self, other], bw)
    }

    #[track_caller]
    fn unary<O: UnaryOp<T>>(&self, op: O) -> Result<Tensor<T>> {
        let out = on_device!(self.device(),
            cuda => cuda::unary(op, self)?,
            cpu => Tensor::from_cpu(cpu::unary(op, &self.values()?), self.shape().to_vec()));
        let saved = match O::SAVES {
            Saves::Input => Some(Saved::new(self)),
            Saves::Output => Some(Saved::new(&out.detach())),
            Saves::Nothing => None,
        };
        record(out, &[self], UnaryBackward { op, saved })
    }

    /// `self + other`, broadcasting as NumPy. d/da = 1, d/db = 1 (summed back over broadcast axes).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 2., 3., 4.], &[2, 2], Device::Cpu)?;
    /// let b = Tensor::<f32>::from_vec(vec![10., 20.], &[2], Device::Cpu)?;
    /// assert_eq!(a.add(&b)?.to_vec()?, vec![11., 22., 13., 24.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn add(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(other, BinaryOp::Add)
    }

    /// `self - other`, broadcasting. d/da = 1, d/db = -1.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![5., 7.], &[2], Device::Cpu)?;
    /// assert_eq!(a.sub(&a)?.to_vec()?, vec![0., 0.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn sub(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(other, BinaryOp::Sub)
    }

    /// `self * other` elementwise, broadcasting. d/da = b, d/db = a.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![2., 3.], &[2], Device::Cpu)?;
    /// assert_eq!(a.mul(&a)?.to_vec()?, vec![4., 9.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn mul(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(other, BinaryOp::Mul)
    }

    /// `self / other` elementwise, broadcasting. d/da = 1/b, d/db = -a/b².
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 3.], &[2], Device::Cpu)?;
    /// let b = Tensor::<f32>::from_vec(vec![2.], &[1], Device::Cpu)?;
    /// assert_eq!(a.div(&b)?.to_vec()?, vec![0.5, 1.5]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn div(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        self.binary(other, BinaryOp::Div)
    }

    /// `self + s`. d/dx = 1.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 2.], &[2], Device::Cpu)?;
    /// assert_eq!(a.add_scalar(0.5)?.to_vec()?, vec![1.5, 2.5]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn add_scalar(&self, s: T) -> Result<Tensor<T>> {
        self.unary(AddScalar(s))
    }

    /// `self * s`. d/dx = s.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., 2.], &[2], Device::Cpu)?;
    /// assert_eq!(a.mul_scalar(3.0)?.to_vec()?, vec![3., 6.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn mul_scalar(&self, s: T) -> Result<Tensor<T>> {
        self.unary(MulScalar(s))
    }

    /// `-self`. d/dx = -1.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![1., -2.], &[2], Device::Cpu)?;
    /// assert_eq!(a.neg()?.to_vec()?, vec![-1., 2.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn neg(&self) -> Result<Tensor<T>> {
        self.unary(Neg)
    }

    /// e^x. d/dx = e^x.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f64>::from_vec(vec![0.0], &[1], Device::Cpu)?;
    /// assert_eq!(a.exp()?.item()?, 1.0);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn exp(&self) -> Result<Tensor<T>> {
        self.unary(Exp)
    }

    /// Natural log (NaN below 0, as PyTorch). d/dx = 1/x.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f64>::from_vec(vec![1.0], &[1], Device::Cpu)?;
    /// assert_eq!(a.log()?.item()?, 0.0);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn log(&self) -> Result<Tensor<T>> {
        self.unary(Log)
    }

    /// Square root. d/dx = 1/(2 sqrt(x)).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f64>::from_vec(vec![4.0], &[1], Device::Cpu)?;
    /// assert_eq!(a.sqrt()?.item()?, 2.0);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn sqrt(&self) -> Result<Tensor<T>> {
        self.unary(Sqrt)
    }

    /// |x|. d/dx = sign(x), 0 at 0.
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![-1.5], &[1], Device::Cpu)?;
    /// assert_eq!(a.abs()?.item()?, 1.5);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn abs(&self) -> Result<Tensor<T>> {
        self.unary(Abs)
    }

    /// max(x, 0). d/dx = 1 where x > 0, else 0 (relu'(0) = 0).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![-1., 0., 2.], &[3], Device::Cpu)?;
    /// assert_eq!(a.relu()?.to_vec()?, vec![0., 0., 2.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn relu(&self) -> Result<Tensor<T>> {
        self.unary(Relu)
    }

    /// tanh(x). d/dx = 1 - tanh²(x).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f64>::from_vec(vec![0.0], &[1], Device::Cpu)?;
    /// assert_eq!(a.tanh()?.item()?, 0.0);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn tanh(&self) -> Result<Tensor<T>> {
        self.unary(Tanh)
    }

    /// 1 / (1 + e^-x). d/dx = σ(x)(1 - σ(x)).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f64>::from_vec(vec![0.0], &[1], Device::Cpu)?;
    /// assert_eq!(a.sigmoid()?.item()?, 0.5);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn sigmoid(&self) -> Result<Tensor<T>> {
        self.unary(Sigmoid)
    }

    /// x^p. d/dx = p x^(p-1) (0 for p = 0).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f64>::from_vec(vec![3.0], &[1], Device::Cpu)?;
    /// assert_eq!(a.powf(2.0)?.item()?, 9.0);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn powf(&self, p: T) -> Result<Tensor<T>> {
        self.unary(Powf(p))
    }

    /// max(x, min). d/dx = 1 where x >= min, else 0 (as PyTorch's clamp_min).
    ///
    /// ```
    /// # use smallgrad::{Tensor, Device};
    /// let a = Tensor::<f32>::from_vec(vec![-1., 2.], &[2], Device::Cpu)?;
    /// assert_eq!(a.clamp_min(0.5)?.to_vec()?, vec![0.5, 2.]);
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn clamp_min(&self, min: T) -> Result<Tensor<T>> {
        self.unary(ClampMin(min))
    }
}
