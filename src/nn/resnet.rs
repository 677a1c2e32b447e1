//! ResNets: torchvision's ImageNet layout (`resnet18/34/50`) and the CIFAR layout of He et al.
//! (`cifar_resnet(depth)`, depth = 6n + 2), with parameter names and initialisation as
//! torchvision: Kaiming-normal (fan_out) convolutions, batch norm weight 1 / bias 0, PyTorch's
//! default Linear.

use super::layers::{BatchNorm2d, Conv2d, Linear};
use super::{Module, prefixed};
use crate::dtype::Float;
use crate::{Device, Error, Result, Rng, Tensor};

/// Configuration of the ImageNet-layout ResNets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResNetConfig {
    /// Input channels (3 for RGB, 1 for grey).
    pub in_channels: usize,
    /// Number of classes of the final Linear layer.
    pub num_classes: usize,
    /// Replace the 7x7/s2 stem and its max-pool with one 3x3/s1 conv (for 32x32-ish inputs).
    pub small_input_stem: bool,
    /// Seed of the initialisation.
    pub seed: u64,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig {
            in_channels: 3,
            num_classes: 1000,
            small_input_stem: false,
            seed: 0,
        }
    }
}

/// Configuration of the CIFAR-layout ResNets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CifarResNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Width multiplier: stage widths are 16w, 32w, 64w (the paper's CIFAR-100 model: w = 2).
    pub width: usize,
    /// Seed of the initialisation.
    pub seed: u64,
}

impl Default for CifarResNetConfig {
    fn default() -> Self {
        CifarResNetConfig {
            in_channels: 3,
            num_classes: 10,
            width: 1,
            seed: 0,
        }
    }
}

fn conv<T: Float>(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    rng: &mut Rng,
    device: Device,
) -> Result<Conv2d<T>> {
    Conv2d::new(cin, cout, k, stride, k / 2, false, rng, device)?.kaiming_normal_fan_out(rng)
}

/// The projection shortcut: 1x1 conv (stride) + batch norm, named `downsample.0` / `.1`.
struct Downsample<T: Float> {
    conv: Conv2d<T>,
    bn: BatchNorm2d<T>,
}

impl<T: Float> Downsample<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        self.bn.forward(&self.conv.forward(x)?)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut v = prefixed("downsample.0", self.conv.named_parameters());
        v.extend(prefixed("downsample.1", self.bn.named_parameters()));
        v
    }
    fn buffers(&self) -> Vec<(String, Tensor<T>)> {
        prefixed("downsample.1", self.bn.buffers())
    }
}

/// Two 3x3 convs with batch norm and a residual connection (expansion 1).
pub struct BasicBlock<T: Float = f32> {
    convs: Vec<Conv2d<T>>,
    bns: Vec<BatchNorm2d<T>>,
    downsample: Option<Downsample<T>>,
}

/// Three convs 1x1 → 3x3 (stride here, as torchvision v1.5) → 1x1 with 4x expansion.
pub struct Bottleneck<T: Float = f32> {
    convs: Vec<Conv2d<T>>,
    bns: Vec<BatchNorm2d<T>>,
    downsample: Option<Downsample<T>>,
}

/// The shared body of both block kinds: conv-bn(-relu) chain, shortcut, add, relu.
fn block_forward<T: Float>(
    convs: &[Conv2d<T>],
    bns: &[BatchNorm2d<T>],
    downsample: &Option<Downsample<T>>,
    x: &Tensor<T>,
) -> Result<Tensor<T>> {
    let mut h = x.clone();
    for (i, (c, b)) in convs.iter().zip(bns).enumerate() {
        h = b.forward(&c.forward(&h)?)?;
        if i + 1 < convs.len() {
            h = h.relu()?;
        }
    }
    let shortcut = match downsample {
        Some(d) => d.forward(x)?,
        None => x.clone(),
    };
    h.add(&shortcut)?.relu()
}

fn block_params<T: Float>(
    convs: &[Conv2d<T>],
    bns: &[BatchNorm2d<T>],
    ds: &Option<Downsample<T>>,
) -> Vec<(String, Tensor<T>)> {
    let mut v = Vec::new();
    for (i, (c, b)) in convs.iter().zip(bns).enumerate() {
        v.extend(prefixed(&format!("conv{}", i + 1), c.named_parameters()));
        v.extend(prefixed(&format!("bn{}", i + 1), b.named_parameters()));
    }
    if let Some(d) = ds {
        v.extend(d.named_parameters());
    }
    v
}

fn block_buffers<T: Float>(bns: &[BatchNorm2d<T>], ds: &Option<Downsample<T>>) -> Vec<(String, Tensor<T>)> {
    let mut v = Vec::new();
    for (i, b) in bns.iter().enumerate() {
        v.extend(prefixed(&format!("bn{}", i + 1), b.buffers()));
    }
    if let Some(d) = ds {
        v.extend(d.buffers());
    }
    v
}

fn set_block_training<T: Float>(bns: &mut [BatchNorm2d<T>], ds: &mut Option<Downsample<T>>, t: bool) {
    bns.iter_mut().for_each(|b| b.set_training(t));
    if let Some(d) = ds {
        d.bn.set_training(t);
    }
}

fn make_downsample<T: Float>(
    cin: usize,
    cout: usize,
    stride: usize,
    rng: &mut Rng,
    device: Device,
) -> Result<Option<Downsample<T>>> {
    Ok(if stride != 1 || cin != cout {
        Some(Downsample {
            conv: conv(cin, cout, 1, stride, rng, device)?,
            bn: BatchNorm2d::new(cout, device)?,
        })
    } else {
        None
    })
}

impl<T: Float> BasicBlock<T> {
    /// A block from `cin` to `planes` channels; a projection shortcut when the shape changes.
    pub fn new(cin: usize, planes: usize, stride: usize, rng: &mut Rng, device: Device) -> Result<Self> {
        let convs = vec![
            conv(cin, planes, 3, stride, rng, device)?,
            conv(planes, planes, 3, 1, rng, device)?,
        ];
        let bns = vec![BatchNorm2d::new(planes, device)?, BatchNorm2d::new(planes, device)?];
        let downsample = make_downsample(cin, planes, stride, rng, device)?;
        Ok(BasicBlock { convs, bns, downsample })
    }
}

impl<T: Float> Bottleneck<T> {
    /// A block from `cin` to `4 * planes` channels.
    pub fn new(cin: usize, planes: usize, stride: usize, rng: &mut Rng, device: Device) -> Result<Self> {
        let convs = vec![
            conv(cin, planes, 1, 1, rng, device)?,
            conv(planes, planes, 3, stride, rng, device)?,
            conv(planes, planes * 4, 1, 1, rng, device)?,
        ];
        let bns = vec![
            BatchNorm2d::new(planes, device)?,
            BatchNorm2d::new(planes, device)?,
            BatchNorm2d::new(planes * 4, device)?,
        ];
        let downsample = make_downsample(cin, planes * 4, stride, rng, device)?;
        Ok(Bottleneck { convs, bns, downsample })
    }
}

macro_rules! impl_block_module {
    ($ty:ident) => {
        impl<T: Float> Module<T> for $ty<T> {
            fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
                block_forward(&self.convs, &self.bns, &self.downsample, x)
            }
            fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
                block_params(&self.convs, &self.bns, &self.downsample)
            }
            fn buffers(&self) -> Vec<(String, Tensor<T>)> {
                block_buffers(&self.bns, &self.downsample)
            }
            fn set_training(&mut self, t: bool) {
                set_block_training(&mut self.bns, &mut self.downsample, t)
            }
        }
    };
}
impl_block_module!(BasicBlock);
impl_block_module!(Bottleneck);

/// A ResNet: stem (conv-bn-relu, optional max-pool), stages of blocks named `layer1..`,
/// global average pool, and the classifier `fc`.
pub struct ResNet<T: Float = f32> {
    conv1: Conv2d<T>,
    bn1: BatchNorm2d<T>,
    maxpool: bool,
    layers: Vec<Vec<Box<dyn Module<T>>>>,
    /// The final classifier (exposed so a head can be swapped or inspected).
    pub fc: Linear<T>,
    feature_dim: usize,
}

impl<T: Float> ResNet<T> {
    /// The width of the pooled features fed to `fc`.
    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// The pooled features `[N, feature_dim]` (everything but `fc`).
    pub fn features(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let mut h = self.bn1.forward(&self.conv1.forward(x)?)?.relu()?;
        if self.maxpool {
            h = h.max_pool2d(3, 2, 1)?;
        }
        for stage in &self.layers {
            for b in stage {
                h = b.forward(&h)?;
            }
        }
        h.adaptive_avg_pool2d(1)?.flatten(1)
    }
}

impl<T: Float> Module<T> for ResNet<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        self.fc.forward(&self.features(x)?)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut v = prefixed("conv1", self.conv1.named_parameters());
        v.extend(prefixed("bn1", self.bn1.named_parameters()));
        for (s, stage) in self.layers.iter().enumerate() {
            for (i, b) in stage.iter().enumerate() {
                v.extend(prefixed(&format!("layer{}.{i}", s + 1), b.named_parameters()));
            }
        }
        v.extend(prefixed("fc", self.fc.named_parameters()));
        v
    }
    fn buffers(&self) -> Vec<(String, Tensor<T>)> {
        let mut v = prefixed("bn1", self.bn1.buffers());
        for (s, stage) in self.layers.iter().enumerate() {
            for (i, b) in stage.iter().enumerate() {
                v.extend(prefixed(&format!("layer{}.{i}", s + 1), b.buffers()));
            }
        }
        v
    }
    fn set_training(&mut self, t: bool) {
        self.bn1.set_training(t);
        self.layers.iter_mut().flatten().for_each(|b| b.set_training(t));
    }
}

#[derive(Clone, Copy)]
enum BlockKind {
    Basic,
    Bottleneck,
}

#[allow(clippy::too_many_arguments)]
fn build<T: Float>(
    kind: BlockKind,
    blocks: &[usize],
    widths: &[usize],
    strides: &[usize],
    stem_width: usize,
    stem: (usize, usize, bool),
    in_channels: usize,
    num_classes: usize,
    seed: u64,
) -> Result<ResNet<T>> {
    if in_channels == 0 || num_classes == 0 {
        return Err(Error::invalid(
            "resnet",
            format!("in_channels ({in_channels}) and num_classes ({num_classes}) must be positive"),
        ));
    }
    let device = Device::Cpu;
    let mut rng = Rng::new(seed);
    let (k, s, maxpool) = stem;
    let conv1 = conv(in_channels, stem_width, k, s, &mut rng, device)?;
    let bn1 = BatchNorm2d::new(stem_width, device)?;
    let expansion = match kind {
        BlockKind::Basic => 1,
        BlockKind::Bottleneck => 4,
    };
    let mut cin = stem_width;
    let mut layers = Vec::new();
    for ((&n, &w), &st) in blocks.iter().zip(widths).zip(strides) {
        let mut stage: Vec<Box<dyn Module<T>>> = Vec::new();
        for i in 0..n {
            let stride = if i == 0 { st } else { 1 };
            stage.push(match kind {
                BlockKind::Basic => Box::new(BasicBlock::new(cin, w, stride, &mut rng, device)?),
                BlockKind::Bottleneck => Box::new(Bottleneck::new(cin, w, stride, &mut rng, device)?),
            });
            cin = w * expansion;
        }
        layers.push(stage);
    }
    let fc = Linear::new(cin, num_classes, true, &mut rng, device)?;
    Ok(ResNet {
        conv1,
        bn1,
        maxpool,
        layers,
        fc,
        feature_dim: cin,
    })
}

fn imagenet<T: Float>(kind: BlockKind, blocks: &[usize], cfg: &ResNetConfig) -> Result<ResNet<T>> {
    let stem = if cfg.small_input_stem {
        (3, 1, false)
    } else {
        (7, 2, true)
    };
    build(
        kind,
        blocks,
        &[64, 128, 256, 512],
        &[1, 2, 2, 2],
        64,
        stem,
        cfg.in_channels,
        cfg.num_classes,
        cfg.seed,
    )
}

/// ResNet-18 (BasicBlocks 2-2-2-2); 11,689,512 parameters at 3 input channels, 1000 classes.
pub fn resnet18<T: Float>(cfg: &ResNetConfig) -> Result<ResNet<T>> {
    imagenet(BlockKind::Basic, &[2, 2, 2, 2], cfg)
}

/// ResNet-34 (BasicBlocks 3-4-6-3).
pub fn resnet34<T: Float>(cfg: &ResNetConfig) -> Result<ResNet<T>> {
    imagenet(BlockKind::Basic, &[3, 4, 6, 3], cfg)
}

/// ResNet-50 (Bottlenecks 3-4-6-3); 25,557,032 parameters at 3 input channels, 1000 classes.
pub fn resnet50<T: Float>(cfg: &ResNetConfig) -> Result<ResNet<T>> {
    imagenet(BlockKind::Bottleneck, &[3, 4, 6, 3], cfg)
}

/// The CIFAR ResNet of He et al. (2016): a 3x3 stem, three stages of n BasicBlocks with
/// 16w/32w/64w channels (strides 1, 2, 2; 1x1-conv + BN projection shortcuts where the shape
/// changes), global average pool, Linear. `depth` = 6n + 2: 20, 32, 44, 56 or 110.
pub fn cifar_resnet<T: Float>(depth: usize, cfg: &CifarResNetConfig) -> Result<ResNet<T>> {
    if ![20, 32, 44, 56, 110].contains(&depth) {
        return Err(Error::invalid(
            "cifar_resnet",
            format!("depth {depth} is not one of 20, 32, 44, 56, 110"),
        ));
    }
    if cfg.width == 0 {
        return Err(Error::invalid("cifar_resnet", "width must be at least 1"));
    }
    let n = (depth - 2) / 6;
    let w = cfg.width;
    build(
        BlockKind::Basic,
        &[n, n, n],
        &[16 * w, 32 * w, 64 * w],
        &[1, 2, 2],
        16 * w,
        (3, 1, false),
        cfg.in_channels,
        cfg.num_classes,
        cfg.seed,
    )
}
