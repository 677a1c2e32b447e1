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
    /// The shortcut a block from `cin` to `cout` channels at `stride` needs: a projection when
    /// the shape changes, `None` (identity) otherwise.
    fn if_needed(cin: usize, cout: usize, stride: usize, rng: &mut Rng, device: Device) -> Result<Option<Self>> {
        if stride == 1 && cin == cout {
            return Ok(None);
        }
        Ok(Some(Downsample {
            conv: conv(cin, cout, 1, stride, rng, device)?,
            bn: BatchNorm2d::new(cout, device)?,
        }))
    }

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

/// Two 3x3 convs with batch norm and a residual connection (expansion 1):
/// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
pub struct BasicBlock<T: Float = f32> {
    conv1: Conv2d<T>,
    bn1: BatchNorm2d<T>,
    conv2: Conv2d<T>,
    bn2: BatchNorm2d<T>,
    /// The projection shortcut where the shape changes; identity otherwise.
    downsample: Option<Downsample<T>>,
}

impl<T: Float> BasicBlock<T> {
    /// A block from `cin` to `planes` channels; a projection shortcut when the shape changes.
    pub fn new(cin: usize, planes: usize, stride: usize, rng: &mut Rng, device: Device) -> Result<Self> {
        // Initialisation order (conv1, conv2, shortcut) fixes which random numbers each gets.
        Ok(BasicBlock {
            conv1: conv(cin, planes, 3, stride, rng, device)?,
            bn1: BatchNorm2d::new(planes, device)?,
            conv2: conv(planes, planes, 3, 1, rng, device)?,
            bn2: BatchNorm2d::new(planes, device)?,
            downsample: Downsample::if_needed(cin, planes, stride, rng, device)?,
        })
    }
}

impl<T: Float> Module<T> for BasicBlock<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        // relu(bn(.)) and relu(bn(.) + shortcut) are each one fused op (batch_norm_relu).
        let h = self.bn1.forward_relu(&self.conv1.forward(x)?, None)?;
        let h = self.conv2.forward(&h)?;
        let shortcut = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        self.bn2.forward_relu(&h, Some(&shortcut))
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut v = prefixed("conv1", self.conv1.named_parameters());
        v.extend(prefixed("bn1", self.bn1.named_parameters()));
        v.extend(prefixed("conv2", self.conv2.named_parameters()));
        v.extend(prefixed("bn2", self.bn2.named_parameters()));
        v.extend(self.downsample.iter().flat_map(|d| d.named_parameters()));
        v
    }
    fn buffers(&self) -> Vec<(String, Tensor<T>)> {
        let mut v = prefixed("bn1", self.bn1.buffers());
        v.extend(prefixed("bn2", self.bn2.buffers()));
        v.extend(self.downsample.iter().flat_map(|d| d.buffers()));
        v
    }
    fn set_training(&mut self, t: bool) {
        self.bn1.set_training(t);
        self.bn2.set_training(t);
        self.downsample.iter_mut().for_each(|d| d.bn.set_training(t));
    }
}

/// Three convs 1x1 → 3x3 (stride here, as torchvision v1.5) → 1x1 with 4x expansion:
/// `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`.
pub struct Bottleneck<T: Float = f32> {
    conv1: Conv2d<T>,
    bn1: BatchNorm2d<T>,
    conv2: Conv2d<T>,
    bn2: BatchNorm2d<T>,
    conv3: Conv2d<T>,
    bn3: BatchNorm2d<T>,
    /// The projection shortcut where the shape changes; identity otherwise.
    downsample: Option<Downsample<T>>,
}

impl<T: Float> Bottleneck<T> {
    /// A block from `cin` to `4 * planes` channels.
    pub fn new(cin: usize, planes: usize, stride: usize, rng: &mut Rng, device: Device) -> Result<Self> {
        Ok(Bottleneck {
            conv1: conv(cin, planes, 1, 1, rng, device)?,
            bn1: BatchNorm2d::new(planes, device)?,
            conv2: conv(planes, planes, 3, stride, rng, device)?,
            bn2: BatchNorm2d::new(planes, device)?,
            conv3: conv(planes, planes * 4, 1, 1, rng, device)?,
            bn3: BatchNorm2d::new(planes * 4, device)?,
            downsample: Downsample::if_needed(cin, planes * 4, stride, rng, device)?,
        })
    }
}

impl<T: Float> Module<T> for Bottleneck<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let h = self.bn1.forward_relu(&self.conv1.forward(x)?, None)?;
        let h = self.bn2.forward_relu(&self.conv2.forward(&h)?, None)?;
        let h = self.conv3.forward(&h)?;
        let shortcut = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        self.bn3.forward_relu(&h, Some(&shortcut))
    }
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut v = prefixed("conv1", self.conv1.named_parameters());
        v.extend(prefixed("bn1", self.bn1.named_parameters()));
        v.extend(prefixed("conv2", self.conv2.named_parameters()));
        v.extend(prefixed("bn2", self.bn2.named_parameters()));
        v.extend(prefixed("conv3", self.conv3.named_parameters()));
        v.extend(prefixed("bn3", self.bn3.named_parameters()));
        v.extend(self.downsample.iter().flat_map(|d| d.named_parameters()));
        v
    }
    fn buffers(&self) -> Vec<(String, Tensor<T>)> {
        let mut v = prefixed("bn1", self.bn1.buffers());
        v.extend(prefixed("bn2", self.bn2.buffers()));
        v.extend(prefixed("bn3", self.bn3.buffers()));
        v.extend(self.downsample.iter().flat_map(|d| d.buffers()));
        v
    }
    fn set_training(&mut self, t: bool) {
        self.bn1.set_training(t);
        self.bn2.set_training(t);
        self.bn3.set_training(t);
        self.downsample.iter_mut().for_each(|d| d.bn.set_training(t));
    }
}

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
        let mut h = self.bn1.forward_relu(&self.conv1.forward(x)?, None)?;
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

/// The stem: one conv-bn-relu, optionally followed by a 3x3/s2 max-pool.
struct Stem {
    width: usize,
    kernel: usize,
    stride: usize,
    maxpool: bool,
}

/// Everything that distinguishes one ResNet from another: the stem and, per stage, how many
/// blocks, how wide (`planes`; a Bottleneck outputs 4x) and the first block's stride.
struct Layout {
    block: BlockKind,
    stem: Stem,
    blocks: Vec<usize>,
    widths: Vec<usize>,
    strides: Vec<usize>,
}

fn build<T: Float>(layout: &Layout, in_channels: usize, num_classes: usize, seed: u64) -> Result<ResNet<T>> {
    if in_channels == 0 || num_classes == 0 {
        return Err(Error::invalid(
            "resnet",
            format!("in_channels ({in_channels}) and num_classes ({num_classes}) must be positive"),
        ));
    }
    let device = Device::Cpu;
    let mut rng = Rng::new(seed);
    let stem = &layout.stem;
    let conv1 = conv(in_channels, stem.width, stem.kernel, stem.stride, &mut rng, device)?;
    let bn1 = BatchNorm2d::new(stem.width, device)?;
    let expansion = match layout.block {
        BlockKind::Basic => 1,
        BlockKind::Bottleneck => 4,
    };
    let mut cin = stem.width;
    let mut layers = Vec::new();
    for ((&n, &w), &first_stride) in layout.blocks.iter().zip(&layout.widths).zip(&layout.strides) {
        let mut stage: Vec<Box<dyn Module<T>>> = Vec::new();
        for i in 0..n {
            let stride = if i == 0 { first_stride } else { 1 };
            stage.push(match layout.block {
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
        maxpool: stem.maxpool,
        layers,
        fc,
        feature_dim: cin,
    })
}

/// torchvision's ImageNet layout: a 7x7/s2 stem with max-pool (or a 3x3/s1 stem for small
/// inputs), four stages 64-128-256-512 wide with strides 1-2-2-2.
fn imagenet<T: Float>(block: BlockKind, blocks: [usize; 4], cfg: &ResNetConfig) -> Result<ResNet<T>> {
    let stem = if cfg.small_input_stem {
        Stem {
            width: 64,
            kernel: 3,
            stride: 1,
            maxpool: false,
        }
    } else {
        Stem {
            width: 64,
            kernel: 7,
            stride: 2,
            maxpool: true,
        }
    };
    let layout = Layout {
        block,
        stem,
        blocks: blocks.to_vec(),
        widths: vec![64, 128, 256, 512],
        strides: vec![1, 2, 2, 2],
    };
    build(&layout, cfg.in_channels, cfg.num_classes, cfg.seed)
}

/// ResNet-18 (BasicBlocks 2-2-2-2); 11,689,512 parameters at 3 input channels, 1000 classes.
pub fn resnet18<T: Float>(cfg: &ResNetConfig) -> Result<ResNet<T>> {
    imagenet(BlockKind::Basic, [2, 2, 2, 2], cfg)
}

/// ResNet-34 (BasicBlocks 3-4-6-3).
pub fn resnet34<T: Float>(cfg: &ResNetConfig) -> Result<ResNet<T>> {
    imagenet(BlockKind::Basic, [3, 4, 6, 3], cfg)
}

/// ResNet-50 (Bottlenecks 3-4-6-3); 25,557,032 parameters at 3 input channels, 1000 classes.
pub fn resnet50<T: Float>(cfg: &ResNetConfig) -> Result<ResNet<T>> {
    imagenet(BlockKind::Bottleneck, [3, 4, 6, 3], cfg)
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
    let layout = Layout {
        block: BlockKind::Basic,
        stem: Stem {
            width: 16 * w,
            kernel: 3,
            stride: 1,
            maxpool: false,
        },
        blocks: vec![n, n, n],
        widths: vec![16 * w, 32 * w, 64 * w],
        strides: vec![1, 2, 2],
    };
    build(&layout, cfg.in_channels, cfg.num_classes, cfg.seed)
}
