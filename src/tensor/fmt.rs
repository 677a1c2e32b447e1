//! `Debug` and `Display` for tensors, in the spirit of PyTorch's repr: values (abbreviated
//! with `...` past 1000 elements), then shape, device and dtype.

use super::Tensor;
use crate::dtype::Float;
use std::fmt;

const EDGE: usize = 3;
const SUMMARIZE_ABOVE: usize = 1000;

fn write_values<T: Float>(
    f: &mut fmt::Formatter<'_>,
    data: &[T],
    shape: &[usize],
    summarize: bool,
    indent: usize,
) -> fmt::Result {
    if shape.is_empty() {
        return write!(f, "{:.4}", data[0]);
    }
    let n = shape[0];
    let inner: usize = shape[1..].iter().product();
    write!(f, "[")?;
    let idx: Vec<Option<usize>> = if summarize && n > 2 * EDGE {
        (0..EDGE)
            .map(Some)
            .chain([None])
            .chain((n - EDGE..n).map(Some))
            .collect()
    } else {
        (0..n).map(Some).collect()
    };
    for (k, i) in idx.iter().enumerate() {
        if k > 0 {
            if shape.len() > 1 {
                write!(f, ",\n{:indent$}", "", indent = indent + 1)?;
            } else {
                write!(f, ", ")?;
            }
        }
        match i {
            None => write!(f, "...")?,
            Some(i) => write_values(f, &data[i * inner..(i + 1) * inner], &shape[1..], summarize, indent + 1)?,
        }
    }
    write!(f, "]")
}

impl<T: Float> fmt::Display for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tensor(")?;
        match self.host_values() {
            Ok(data) => write_values(f, &data, self.shape(), self.numel() > SUMMARIZE_ABOVE, 7)?,
            Err(_) => write!(f, "<on {}>", self.device())?,
        }
        write!(
            f,
            ", shape={:?}, device={}, dtype={}",
            self.shape(),
            self.device(),
            T::DTYPE
        )?;
        if let Some(op) = self.op_name() {
            write!(f, ", grad_fn={op}")?;
        } else if self.is_requires_grad() {
            write!(f, ", requires_grad=true")?;
        }
        write!(f, ")")
    }
}

impl<T: Float> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, Tensor};

    #[test]
    fn display_shows_values_shape_device_dtype_and_grad_fn() {
        let x = Tensor::<f32>::from_vec(vec![1.0, 2.5, -3.0, 4.0], &[2, 2], Device::Cpu)
            .unwrap()
            .requires_grad();
        let s = format!("{x}");
        assert_eq!(
            s,
            "tensor([[1.0000, 2.5000],\n        [-3.0000, 4.0000]], shape=[2, 2], device=cpu, dtype=f32, requires_grad=true)"
        );
        let y = x.mul_scalar(2.0).unwrap();
        assert!(format!("{y:?}").ends_with("grad_fn=mul_scalar)"));
    }

    #[test]
    fn long_tensors_are_abbreviated() {
        let x = Tensor::<f64>::zeros(&[3000], Device::Cpu).unwrap();
        let s = x.to_string();
        assert!(s.contains("..."), "{s}");
        assert!(s.len() < 200, "{s}");
        let scalar = Tensor::<f64>::from_vec(vec![0.5], &[], Device::Cpu).unwrap();
        assert_eq!(scalar.to_string(), "tensor(0.5000, shape=[], device=cpu, dtype=f64)");
    }

    #[test]
    fn tensors_are_send_and_sync() {
        fn check<X: Send + Sync>() {}
        check::<Tensor<f32>>();
        check::<Tensor<f64>>();
    }
}
