//! Losses: [`cross_entropy`] and the [`CosineLoss`] of Barz & Denzler, "Deep Learning on
//! Small Datasets without Pre-Training using Cosine Loss" (WACV 2020), in the form of the
//! "PyTorch - Cosine Loss" post this crate started from.
//!
//! # The cosine loss
//! The network's output `x` (one value per class) is compared by angle with the one-hot
//! embedding `e_y` of the true class `y`:
//!
//! ```text
//! L(x, y) = 1 - cos(x, e_y)  +  xent * CE(normalize(x), y)
//!         = 1 - x_y / ||x||  -  xent * log softmax(x / ||x||)_y        (xent = 0.1)
//! ```
//!
//! reduced over the batch by [`Reduction`]. Only the direction of `x` matters to the first
//! term; the cross-entropy on the *normalised* output (its softmax sees values in [-1, 1])
//! adds a little of the usual classification pressure. Prediction is `argmax(x)`.
//!
//! # Its gradient
//! Far from zero, `d/dx (1 - cos(x, e_y)) = -(e_y - cos * x_hat) / ||x||` with
//! `x_hat = x / ||x||`: it is orthogonal to `x` (it only turns the output) and shrinks as
//! `||x||` grows, one reason the cosine loss tolerates large learning rates (Barz & Denzler
//! tuned 0.5-2.5 where cross-entropy wanted 0.05-1.0). The cross-entropy term contributes
//! `xent * (I - x_hat x_hat^T) (softmax(x_hat) - e_y) / ||x||`.
//!
//! Both losses here are composites of differentiable ops (log_softmax, normalize,
//! cosine_similarity, mean / sum), so their gradients come from the chain rule; the only
//! hand-written backward is the "pick `-log p[i, t_i]`" step of the negative log-likelihood,
//! which scatters `-g[i]` back to position `(i, t_i)`.

#[cfg(feature = "cuda")]
mod cuda;

use crate::autograd::{Backward, record};
use crate::dtype::Float;
use crate::{Error, Result, Tensor};

/// How a per-sample loss is reduced over the batch, as PyTorch's `reduction` argument.
///
/// ```
/// use smallgrad::loss::Reduction;
/// assert_eq!(Reduction::default(), Reduction::Mean);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reduction {
    /// The mean over the batch (NaN for an empty batch, as PyTorch). The default.
    #[default]
    Mean,
    /// The sum over the batch (0 for an empty batch).
    Sum,
    /// No reduction: one loss per sample, shape `[N]`.
    None,
}

fn reduce<T: Float>(per_sample: Tensor<T>, r: Reduction) -> Result<Tensor<T>> {
    match r {
        Reduction::Mean => per_sample.mean(),
        Reduction::Sum => per_sample.sum(),
        Reduction::None => Ok(per_sample),
    }
}

/// Checks logits `[N, C]` against `targets` and returns `(N, C)`.
fn check_logits<T: Float>(op: &'static str, logits: &Tensor<T>, targets: &[usize]) -> Result<(usize, usize)> {
    let &[n, c] = logits.shape() else {
        return Err(Error::shape(
            op,
            format!(
                "logits must be 2-D [N, C] (only this layout is supported), got shape {:?}",
                logits.shape()
            ),
        ));
    };
    if targets.len() != n {
        return Err(Error::shape(
            op,
            format!(
                "{} targets for logits of shape {:?} (expected N = {n})",
                targets.len(),
                [n, c]
            ),
        ));
    }
    if let Some((i, &t)) = targets.iter().enumerate().find(|&(_, &t)| t >= c) {
        return Err(Error::invalid(
            op,
            format!("target {t} at position {i} is out of range for C = {c} classes"),
        ));
    }
    Ok((n, c))
}

/// A batch's class indices as the loss kernels read them: the host slice, and on a GPU one
/// device copy made once per loss call and shared by the one-hot, the NLL and its backward.
#[derive(Clone)]
struct Targets<'a> {
    host: &'a [usize],
    #[cfg(feature = "cuda")]
    dev: Option<cuda::DevTargets>,
}

impl<'a> Targets<'a> {
    /// The targets for logits on `device` (uploaded there if it is a GPU).
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    fn new(host: &'a [usize], device: crate::Device) -> Result<Self> {
        Ok(Targets {
            host,
            #[cfg(feature = "cuda")]
            dev: match device {
                crate::Device::Cuda(_) => Some(cuda::DevTargets::upload(host, device)?),
                crate::Device::Cpu => None,
            },
        })
    }

    /// What a backward keeps: the device copy on a GPU, the indices on the CPU.
    fn saved(&self) -> SavedTargets {
        #[cfg(feature = "cuda")]
        if let Some(dt) = &self.dev {
            return SavedTargets::Dev(dt.clone());
        }
        SavedTargets::Host(self.host.to_vec())
    }

    /// One-hot rows `[N, classes]` on the targets' device.
    fn one_hot<T: Float>(&self, classes: usize) -> Result<Tensor<T>> {
        #[cfg(feature = "cuda")]
        if let Some(dt) = &self.dev {
            return cuda::one_hot(dt, classes);
        }
        Tensor::one_hot(self.host, classes, crate::Device::Cpu)
    }
}

/// Backward of [`nll_pick`]: `-g[i]` scattered to `(i, t_i)`, 0 elsewhere.
struct NllPickBackward {
    targets: SavedTargets,
    classes: usize,
}

/// The targets a pick's backward reads, where its forward ran.
enum SavedTargets {
    Host(Vec<usize>),
    #[cfg(feature = "cuda")]
    Dev(cuda::DevTargets),
}

impl<T: Float> Backward<T> for NllPickBackward {
    fn name(&self) -> &'static str {
        "nll_pick"
    }
    fn backward(&self, g: &Tensor<T>, inputs: &[Tensor<T>]) -> Result<Vec<Option<Tensor<T>>>> {
        let dx = match &self.targets {
            #[cfg(feature = "cuda")]
            SavedTargets::Dev(dt) => cuda::nll_backward(g, dt, inputs[0].shape())?,
            SavedTargets::Host(targets) => {
                let mut dx = vec![T::ZERO; inputs[0].numel()];
                for (i, (&t, &gi)) in targets.iter().zip(g.values()?.iter()).enumerate() {
                    dx[i * self.classes + t] = -gi;
                }
                Tensor::from_cpu(dx, inputs[0].shape().to_vec())
            }
        };
        Ok(vec![Some(dx)])
    }
}

/// The values of [`nll_pick`], on the device of `logp`.
fn pick<T: Float>(logp: &Tensor<T>, targets: &Targets<'_>, classes: usize) -> Result<Tensor<T>> {
    #[cfg(feature = "cuda")]
    if let Some(dt) = &targets.dev {
        return cuda::nll_pick(logp, dt, classes);
    }
    let lp = logp.values()?;
    let data = targets
        .host
        .iter()
        .enumerate()
        .map(|(i, &t)| -lp[i * classes + t])
        .collect();
    Ok(Tensor::from_cpu(data, vec![targets.host.len()]))
}

/// `out[i] = -logp[i, t_i]` for `logp` of shape `[N, C]` (already validated): the negative
/// log-likelihood per sample. d/dlogp[i, j] = -g[i] if j = t_i else 0.
#[track_caller]
fn nll_pick<T: Float>(logp: &Tensor<T>, targets: &Targets<'_>, classes: usize) -> Result<Tensor<T>> {
    record(
        pick(logp, targets, classes)?,
        &[logp],
        NllPickBackward {
            targets: targets.saved(),
            classes,
        },
    )
}

/// Cross-entropy between `logits` `[N, C]` (unnormalised scores; only 2-D logits are
/// supported) and class indices `targets` (length N, each < C), as
/// `F.cross_entropy(logits, targets, reduction=...)`: `-log_softmax(logits, 1)[i, t_i]`, reduced
/// by `reduction` (`None` gives shape `[N]`; an empty batch gives NaN for `Mean`, 0 for `Sum`).
/// `Err` on other ranks, a wrong number of targets, or a target >= C.
/// Derivative: d/dlogits = (softmax(logits) - onehot(targets)), times 1/N for `Mean`.
///
/// ```
/// use smallgrad::{Tensor, Device, loss::{cross_entropy, Reduction}};
/// let logits = Tensor::<f64>::from_vec(vec![0., 0., 5., 5.], &[2, 2], Device::Cpu)?;
/// let l = cross_entropy(&logits, &[0, 1], Reduction::Mean)?;
/// assert!((l.item()? - 2f64.ln()).abs() < 1e-12);
/// # Ok::<(), smallgrad::Error>(())
/// ```
#[track_caller]
pub fn cross_entropy<T: Float>(logits: &Tensor<T>, targets: &[usize], reduction: Reduction) -> Result<Tensor<T>> {
    let (_, c) = check_logits("cross_entropy", logits, targets)?;
    cross_entropy_of(logits, &Targets::new(targets, logits.device())?, c, reduction)
}

/// [`cross_entropy`] after its checks, with the targets' device copy made by the caller.
fn cross_entropy_of<T: Float>(
    logits: &Tensor<T>,
    targets: &Targets<'_>,
    classes: usize,
    reduction: Reduction,
) -> Result<Tensor<T>> {
    let logp = logits.log_softmax(1)?;
    reduce(nll_pick(&logp, targets, classes)?, reduction)
}

/// The cosine loss plus a weighted cross-entropy on the normalised output, exactly the seed
/// post's PyTorch module (see the [module docs](self) for the formula and its gradient):
///
/// ```text
/// reduce(1 - cosine_similarity(logits, one_hot(targets), dim 1, eps 1e-8))
///   + xent * cross_entropy(normalize(logits, dim 1, eps 1e-12), targets, reduction)
/// ```
///
/// ```
/// use smallgrad::{Tensor, Device, loss::{CosineLoss, Reduction}};
/// let loss = CosineLoss { xent: 0.0, reduction: Reduction::Sum };
/// let logits = Tensor::<f32>::from_vec(vec![2., 0., 0., 3.], &[2, 2], Device::Cpu)?;
/// assert_eq!(loss.forward(&logits, &[0, 1])?.item()?, 0.0);   // both aligned with their class
/// # Ok::<(), smallgrad::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineLoss {
    /// Weight of the cross-entropy term (lambda in the paper); 0.1 by default.
    pub xent: f64,
    /// How the per-sample losses are reduced over the batch; `Mean` by default.
    pub reduction: Reduction,
}

impl Default for CosineLoss {
    /// `xent = 0.1`, `reduction = Mean`, as the seed module.
    fn default() -> Self {
        CosineLoss {
            xent: 0.1,
            reduction: Reduction::Mean,
        }
    }
}

impl CosineLoss {
    /// The loss of `logits` `[N, C]` (only 2-D logits are supported) for class indices
    /// `targets` (length N, each < C). `Err` on other ranks, a wrong number of targets, a
    /// target >= C, or a non-finite `xent`.
    /// Derivative (norms far from 0): d/dx of the cosine term is `-(e_y - cos * x_hat) / ||x||`
    /// per sample, plus `xent` times the cross-entropy's gradient through `normalize`.
    ///
    /// ```
    /// use smallgrad::{Tensor, Device, loss::CosineLoss};
    /// let logits = Tensor::<f64>::from_vec(vec![1., 1.], &[1, 2], Device::Cpu)?.requires_grad();
    /// let l = CosineLoss::default().forward(&logits, &[0])?;
    /// let want = 1.0 - 0.5f64.sqrt() + 0.1 * 2f64.ln();
    /// assert!((l.item()? - want).abs() < 1e-12);
    /// l.backward()?;
    /// assert!(logits.grad().is_some());
    /// # Ok::<(), smallgrad::Error>(())
    /// ```
    #[track_caller]
    pub fn forward<T: Float>(&self, logits: &Tensor<T>, targets: &[usize]) -> Result<Tensor<T>> {
        const OP: &str = "CosineLoss";
        let (_, c) = check_logits(OP, logits, targets)?;
        if !self.xent.is_finite() {
            return Err(Error::invalid(OP, format!("xent must be finite, got {}", self.xent)));
        }
        // One copy of the targets on the logits' device serves both terms.
        let targets = Targets::new(targets, logits.device())?;
        let onehot = targets.one_hot(c)?;
        let cos = logits.cosine_similarity(&onehot, 1, 1e-8)?;
        let cosine_loss = reduce(cos.neg()?.add_scalar(T::ONE)?, self.reduction)?;
        let cent_loss = cross_entropy_of(&logits.normalize(1, 1e-12)?, &targets, c, self.reduction)?;
        cosine_loss.add(&cent_loss.mul_scalar(T::from_f64(self.xent))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;
    use crate::test_util::{assert_close, central_difference};

    fn t(data: Vec<f64>, shape: &[usize]) -> Tensor<f64> {
        Tensor::from_vec(data, shape, Device::Cpu).unwrap()
    }

    fn logits() -> Vec<f64> {
        vec![0.3, -1.2, 2.0, 0.7, 0.1, 0.1, -0.5, 1.5, -2.0, 0.9, 0.4, -0.3]
    }

    /// Central differences of `f` at `x` (plain loops) against the analytic gradient.
    fn check_grad(f: impl Fn(&Tensor<f64>) -> Tensor<f64>, x0: &[f64], shape: &[usize]) {
        let x = t(x0.to_vec(), shape).requires_grad();
        f(&x).backward().unwrap();
        let an = x.grad().unwrap().to_vec().unwrap();
        let num = central_difference(|v| f(&t(v.to_vec(), shape)).item().unwrap(), x0);
        assert_close("loss gradient", &an, &num, 1e-7);
    }

    /// The seed module's value, written out with plain f64 loops.
    fn reference(x: &[f64], tg: &[usize], c: usize, xent: f64, r: Reduction) -> Vec<f64> {
        let per: Vec<f64> = tg
            .iter()
            .enumerate()
            .map(|(i, &y)| {
                let row = &x[i * c..(i + 1) * c];
                let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                let cos = row[y] / norm.max(1e-8); // ||e_y|| = 1
                let z: Vec<f64> = row.iter().map(|v| v / norm.max(1e-12)).collect();
                let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
                (1.0 - cos) + xent * (lse - z[y])
            })
            .collect();
        match r {
            Reduction::Mean => vec![per.iter().sum::<f64>() / per.len() as f64],
            Reduction::Sum => vec![per.iter().sum()],
            Reduction::None => per,
        }
    }

    #[test]
    fn cosine_loss_matches_plain_formula() {
        let (x, tg) = (logits(), [2, 0, 1]);
        for r in [Reduction::Mean, Reduction::Sum, Reduction::None] {
            let loss = CosineLoss {
                xent: 0.1,
                reduction: r,
            };
            let got = loss.forward(&t(x.clone(), &[3, 4]), &tg).unwrap();
            let want = reference(&x, &tg, 4, 0.1, r);
            assert_eq!(got.shape(), if r == Reduction::None { &[3][..] } else { &[][..] });
            let got = got.to_vec().unwrap();
            assert!(
                got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12),
                "{r:?}: {got:?} vs {want:?}"
            );
        }
        assert_eq!(
            CosineLoss::default(),
            CosineLoss {
                xent: 0.1,
                reduction: Reduction::Mean
            }
        );
    }

    #[test]
    fn gradients_match_central_differences() {
        let x0 = logits();
        let tg = [2, 0, 1];
        for r in [Reduction::Mean, Reduction::Sum] {
            check_grad(|x| cross_entropy(x, &tg, r).unwrap(), &x0, &[3, 4]);
            check_grad(
                |x| {
                    CosineLoss {
                        xent: 0.1,
                        reduction: r,
                    }
                    .forward(x, &tg)
                    .unwrap()
                },
                &x0,
                &[3, 4],
            );
        }
        // the cosine term alone: -(e_y - cos * x_hat) / ||x||
        let x = t(vec![3.0, 4.0], &[1, 2]).requires_grad();
        CosineLoss {
            xent: 0.0,
            reduction: Reduction::Mean,
        }
        .forward(&x, &[0])
        .unwrap()
        .backward()
        .unwrap();
        let g = x.grad().unwrap().to_vec().unwrap();
        let want = [-(1.0 - 0.6 * 0.6) / 5.0, -(0.0 - 0.6 * 0.8) / 5.0];
        assert!((g[0] - want[0]).abs() < 1e-12 && (g[1] - want[1]).abs() < 1e-12);
    }

    #[test]
    fn cross_entropy_values_and_edges() {
        let x = t(logits(), &[3, 4]);
        let per = cross_entropy(&x, &[2, 0, 1], Reduction::None)
            .unwrap()
            .to_vec()
            .unwrap();
        for (i, &y) in [2usize, 0, 1].iter().enumerate() {
            let row = &logits()[i * 4..(i + 1) * 4];
            let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            assert!((per[i] - (lse - row[y])).abs() < 1e-12);
        }
        let empty = t(vec![], &[0, 4]);
        assert!(
            cross_entropy(&empty, &[], Reduction::Mean)
                .unwrap()
                .item()
                .unwrap()
                .is_nan()
        );
        assert_eq!(cross_entropy(&empty, &[], Reduction::Sum).unwrap().item().unwrap(), 0.0);
        assert!(cross_entropy(&x, &[0, 1], Reduction::Mean).is_err());
        assert!(cross_entropy(&x, &[0, 1, 4], Reduction::Mean).is_err());
        assert!(cross_entropy(&t(vec![0.0; 4], &[4]), &[0], Reduction::Mean).is_err());
        let bad = CosineLoss {
            xent: f64::NAN,
            reduction: Reduction::Mean,
        };
        assert!(bad.forward(&x, &[0, 1, 2]).is_err());
        assert!(CosineLoss::default().forward(&x, &[0, 1]).is_err());
    }
}
