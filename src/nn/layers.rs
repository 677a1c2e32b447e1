//! The layers: Linear, Conv2d, BatchNorm1d/2d, ReLU, pooling, Flatten and Sequential.

use super::{Module, prefixed};
use crate::dtype::Float;
use crate::{Device, Error, Pair, Result, Rng, Tensor};

/// Uniform values in [-bound, bound), as PyTorch's default `kaiming_uniform_(a = sqrt(5))`
/// (bound = 1 / sqrt(fan_in)) for weights and biases.
fn uniform<T: Float>(shape: &[usize], bound: f64, rng: &mut Rng, device: Device) -> Result<Tensor<T>> {
    let data = (0..shape.iter().product())
        .map(|_| T::from_f64((2.0 * rng.uniform() - 1.0) * bound))
        .collect();
    Ok(Tensor::from_vec(data, shape, device)?.requires_grad())
}

/// Normal values N(0, std²) (Kaiming-normal when std = sqrt(2 / fan)).
pub(crate) fn normal<T: Float>(shape: &[usize], std: f64, rng: &mut Rng, device: Device) -> Result<Tensor<T>> {
    let data = (0..shape.iter().product())
        .map(|_| T::from_f64(rng.normal() * std))
        .collect();
    Ok(Tensor::from_vec(data, shape, device)?.requires_grad())
}

/// A fully connected layer: y = x · Wᵀ + b, weight `[out, in]`, bias `[out]`.
pub struct Linear<T: Float = f32> {
    /// `[out_features, in_features]`.
    pub weight: Tensor<T>,
    /// `[out_features]`, if any.
    pub bias: Option<Tensor<T>>,
}

impl<T: Float> Linear<T> {
    /// PyTorch's default initialisation: weight and bias uniform in ±1/sqrt(in_features).
    pub fn new(in_features: usize, out_features: usize, bias: bool, rng: &mut Rng, device: Device) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::invalid(
                "Linear::new",
                format!("sizes must be positive, got {in_features} -> {out_features}"),
            ));
        }
        let bound = 1.0 / (in_features as f64).sqrt();
        let weight = uniform(&[out_features, in_features], bound, rng, device)?;
        let bias = if bias {
            Some(uniform(&[out_features], bound, rng, device)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

impl<T: Float> Module<T> for Linear<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let y = x.matmul(&self.weight.transpose(0, 1)?)?;
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
}

/// A 2-d convolution layer over NCHW input, weight `[out, in, kh, kw]`.
pub struct Conv2d<T: Float = f32> {
    /// `[out_channels, in_channels, kh, kw]`.
    pub weight: Tensor<T>,
    /// `[out_channels]`, if any.
    pub bias: Option<Tensor<T>>,
    /// Stride (height, width).
    pub stride: Pair,
    /// Zero padding (height, width).
    pub padding: Pair,
}

impl<T: Float> Conv2d<T> {
    /// PyTorch's default initialisation (uniform in ±1/sqrt(fan_in), fan_in = in·kh·kw).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: impl Into<Pair>,
        stride: impl Into<Pair>,
        padding: impl Into<Pair>,
        bias: bool,
        rng: &mut Rng,
        device: Device,
    ) -> Result<Self> {
        let k = kernel.into();
        let fan_in = in_channels * k.h * k.w;
        if fan_in == 0 || out_channels == 0 {
            return Err(Error::invalid(
                "Conv2d::new",
                "channels and kernel sizes must be positive",
            ));
        }
        let bound = 1.0 / (fan_in as f64).sqrt();
        let weight = uniform(&[out_channels, in_channels, k.h, k.w], bound, rng, device)?;
        let bias = if bias {
            Some(uniform(&[out_channels], bound, rng, device)?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            stride: stride.into(),
            padding: padding.into(),
        })
    }

    /// Re-initialises the weight Kaiming-normal with fan_out (torchvision's ResNet init:
    /// std = sqrt(2 / (out·kh·kw))).
    pub fn kaiming_normal_fan_out(mut self, rng: &mut Rng) -> Result<Self> {
        let s = self.weight.shape().to_vec();
        let fan_out = s[0] * s[2] * s[3];
        self.weight = normal(&s, (2.0 / fan_out as f64).sqrt(), rng, self.weight.device())?;
        Ok(self)
    }
}

impl<T: Float> Module<T> for Conv2d<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.stride, self.padding)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
}

/// Batch normalisation over the channel dim of `[N, C, H, W]` (BatchNorm2d) or `[N, C]`
/// (BatchNorm1d): weight 1, bias 0, running mean 0, running var 1, momentum 0.1, eps 1e-5.
pub struct BatchNorm2d<T: Float = f32> {
    /// Scale γ, `[C]`.
    pub weight: Tensor<T>,
    /// Shift β, `[C]`.
    pub bias: Tensor<T>,
    /// Running mean (a buffer, updated in place in training mode).
    pub running_mean: Tensor<T>,
    /// Running variance (unbiased; a buffer, updated in place in training mode).
    pub running_var: Tensor<T>,
    /// Weight of the current batch in the running statistics.
    pub momentum: f64,
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Batch statistics (true) or running statistics (false).
    pub training: bool,
}

/// Batch normalisation for `[N, C]` input (same as [`BatchNorm2d`], which accepts both ranks).
pub type BatchNorm1d<T = f32> = BatchNorm2d<T>;

impl<T: Float> BatchNorm2d<T> {
    /// PyTorch's defaults, in training mode.
    pub fn new(channels: usize, device: Device) -> Result<Self> {
        Ok(BatchNorm2d {
            weight: Tensor::ones(&[channels], device)?.requires_grad(),
            bias: Tensor::zeros(&[channels], device)?.requires_grad(),
            running_mean: Tensor::zeros(&[channels], device)?,
            running_var: Tensor::ones(&[channels], device)?,
            momentum: 0.1,
            eps: 1e-5,
            training: true,
        })
    }

    /// `relu(self.forward(x) + residual)` as one fused op ([`Tensor::batch_norm_relu`]): the
    /// same values and gradients as the three ops, in fewer passes over memory.
    pub fn forward_relu(&self, x: &Tensor<T>, residual: Option<&Tensor<T>>) -> Result<Tensor<T>> {
        x.batch_norm_relu(
            Some(&self.running_mean),
            Some(&self.running_var),
            Some(&self.weight),
            Some(&self.bias),
            residual,
            self.training,
            self.momentum,
            self.eps,
        )
    }
}

impl<T: Float> Module<T> for BatchNorm2d<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.batch_norm(
            Some(&self.running_mean),
            Some(&self.running_var),
            Some(&self.weight),
            Some(&self.bias),
            self.training,
            self.momentum,
            self.eps,
        )
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        vec![
            ("weight".to_string(), self.weight.clone()),
            ("bias".to_string(), self.bias.clone()),
        ]
    }
    fn buffers(&self) -> Vec<(String, Tensor<T>)> {
        vec![
            ("running_mean".to_string(), self.running_mean.clone()),
            ("running_var".to_string(), self.running_var.clone()),
        ]
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

/// max(x, 0) elementwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReLU;

impl<T: Float> Module<T> for ReLU {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.relu()
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }
}

/// 2-d max pooling.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    /// Window size.
    pub kernel: Pair,
    /// Step between windows.
    pub stride: Pair,
    /// Implicit -inf padding (at most kernel / 2).
    pub padding: Pair,
}

impl MaxPool2d {
    /// A max-pool layer.
    pub fn new(kernel: impl Into<Pair>, stride: impl Into<Pair>, padding: impl Into<Pair>) -> Self {
        MaxPool2d {
            kernel: kernel.into(),
            stride: stride.into(),
            padding: padding.into(),
        }
    }
}

impl<T: Float> Module<T> for MaxPool2d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.max_pool2d(self.kernel, self.stride, self.padding)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }
}

/// 2-d average pooling (padding counted in the average, as PyTorch's default).
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    /// Window size.
    pub kernel: Pair,
    /// Step between windows.
    pub stride: Pair,
    /// Implicit zero padding (at most kernel / 2).
    pub padding: Pair,
}

impl AvgPool2d {
    /// An average-pool layer.
    pub fn new(kernel: impl Into<Pair>, stride: impl Into<Pair>, padding: impl Into<Pair>) -> Self {
        AvgPool2d {
            kernel: kernel.into(),
            stride: stride.into(),
            padding: padding.into(),
        }
    }
}

impl<T: Float> Module<T> for AvgPool2d {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.avg_pool2d(self.kernel, self.stride, self.padding)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }
}

/// Global average pooling `[N, C, H, W]` → `[N, C]` (adaptive average pool to 1x1, flattened).
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalAvgPool;

impl<T: Float> Module<T> for GlobalAvgPool {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.adaptive_avg_pool2d(1)?.flatten(1)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }
}

/// Flattens every dim after the first: `[N, ...]` → `[N, prod(...)]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten;

impl<T: Float> Module<T> for Flatten {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        x.flatten(1)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }
}

/// Modules applied in order; children are named `0`, `1`, ... (as `nn.Sequential`).
#[derive(Default)]
pub struct Sequential<T: Float = f32> {
    /// The children, in order.
    pub layers: Vec<Box<dyn Module<T>>>,
}

impl<T: Float> Sequential<T> {
    /// An empty sequence.
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }
    /// Appends a module (builder style).
    pub fn push(mut self, m: impl Module<T> + 'static) -> Self {
        self.layers.push(Box::new(m));
        self
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward(&h)?;
        }
        Ok(h)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| prefixed(&i.to_string(), l.named_parameters()))
            .collect()
    }
    fn buffers(&self) -> Vec<(String, Tensor<T>)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| prefixed(&i.to_string(), l.buffers()))
            .collect()
    }
    fn set_training(&mut self, training: bool) {
        self.layers.iter_mut().for_each(|l| l.set_training(training));
    }
}
