//! One training run: model, loss, optimiser, schedule, the epoch loop, evaluation and
//! checkpoints.

use crate::args::{Arch, Args, DatasetKind, DeviceKind, LossKind, Schedule};
use crate::dataset::Loaded;
use crate::report::{EpochMetrics, peak_rss_mib, rss_mib, write_csv};
use smallgrad::data::{Augment, Batches, Dataset, Normalization};
use smallgrad::loss::{CosineLoss, Reduction, cross_entropy};
use smallgrad::nn::resnet::{CifarResNetConfig, ResNet, ResNetConfig, cifar_resnet, resnet18, resnet34, resnet50};
use smallgrad::nn::{BatchNorm1d, Linear, Module};
use smallgrad::optim::{CosineAnnealing, LrSchedule, Sgd, SgdConfig, StepDecay, WarmRestarts};
use smallgrad::{Device, Error, Result, Rng, Tensor, checkpoint, no_grad};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// What a finished run reports.
pub struct RunResult {
    pub loss: LossKind,
    pub lr: f64,
    pub rows: Vec<EpochMetrics>,
    pub test_acc: f64,
    pub seconds: f64,
    pub images_per_s: f64,
    pub memory: Vec<(usize, f64)>,
    pub peak_rss_mib: Option<f64>,
}

pub fn build_model(args: &Args, channels: usize, classes: usize) -> Result<ResNet<f32>> {
    let cifar = |depth| {
        cifar_resnet(
            depth,
            &CifarResNetConfig {
                in_channels: channels,
                num_classes: classes,
                width: args.width,
                seed: args.seed,
            },
        )
    };
    let imagenet = ResNetConfig {
        in_channels: channels,
        num_classes: classes,
        small_input_stem: true,
        seed: args.seed,
    };
    match args.arch {
        Arch::Resnet20 => cifar(20),
        Arch::Resnet32 => cifar(32),
        Arch::Resnet44 => cifar(44),
        Arch::Resnet56 => cifar(56),
        Arch::Resnet110 => cifar(110),
        Arch::Resnet18 => resnet18(&imagenet),
        Arch::Resnet34 => resnet34(&imagenet),
        Arch::Resnet50 => resnet50(&imagenet),
    }
}

/// The paper's extra classifier on the L2-normalised output: ReLU → BatchNorm1d → Linear.
struct Head {
    bn: BatchNorm1d<f32>,
    fc: Linear<f32>,
}

impl Head {
    fn new(classes: usize, seed: u64) -> Result<Self> {
        let mut rng = Rng::new(seed ^ 0x4EAD);
        Ok(Head {
            bn: BatchNorm1d::new(classes, Device::Cpu)?,
            fc: Linear::new(classes, classes, true, &mut rng, Device::Cpu)?,
        })
    }
    fn forward(&self, embedding: &Tensor<f32>) -> Result<Tensor<f32>> {
        self.fc.forward(&self.bn.forward(&embedding.relu()?)?)
    }
    fn parameters(&self) -> Vec<Tensor<f32>> {
        let mut p = self.bn.parameters();
        p.extend(self.fc.parameters());
        p
    }
}

/// Loss value and the scores whose argmax is the prediction.
fn loss_and_scores(
    kind: LossKind,
    xent_weight: f64,
    logits: &Tensor<f32>,
    head: Option<&Head>,
    targets: &[usize],
) -> Result<(Tensor<f32>, Tensor<f32>)> {
    Ok(match kind {
        LossKind::Xent => (cross_entropy(logits, targets, Reduction::Mean)?, logits.clone()),
        LossKind::Cosine => (
            CosineLoss {
                xent: 0.0,
                reduction: Reduction::Mean,
            }
            .forward(logits, targets)?,
            logits.clone(),
        ),
        LossKind::CosineXent => (
            CosineLoss {
                xent: xent_weight,
                reduction: Reduction::Mean,
            }
            .forward(logits, targets)?,
            logits.clone(),
        ),
        LossKind::CosineXentHead => {
            let head = head.expect("the head exists for cosine-xent-head");
            let cos = CosineLoss {
                xent: 0.0,
                reduction: Reduction::Mean,
            }
            .forward(logits, targets)?;
            let head_logits = head.forward(&logits.normalize(1, 1e-12)?)?;
            let xent = cross_entropy(&head_logits, targets, Reduction::Mean)?;
            (cos.add(&xent.mul_scalar(xent_weight as f32)?)?, head_logits)
        }
    })
}

fn schedule(args: &Args, base_lr: f64) -> Box<dyn LrSchedule> {
    match args.schedule {
        Schedule::Step => Box::new(StepDecay {
            base_lr,
            step_size: (args.epochs / 3).max(1),
            gamma: 0.1,
        }),
        // SGDR as the paper: cycles T0, 2 T0, 4 T0, ...; T0 chosen so that cycles fill the run.
        Schedule::Sgdr => Box::new(WarmRestarts {
            base_lr,
            min_lr: 1e-6,
            t0: (args.epochs / 7).max(1),
            t_mult: 2,
        }),
        Schedule::Constant => Box::new(StepDecay {
            base_lr,
            step_size: usize::MAX,
            gamma: 1.0,
        }),
        Schedule::Cosine => Box::new(CosineAnnealing {
            base_lr,
            min_lr: 0.0,
            t_max: args.epochs,
        }),
    }
}

/// Images `[n, C, H, W]` of `ds` at `idx`, scaled to [0, 1] and normalised.
fn batch_tensor(ds: &Dataset, idx: std::ops::Range<usize>, norm: &Normalization) -> Result<Tensor<f32>> {
    let len = ds.image_len();
    let data: Vec<f32> = ds.images()[idx.start * len..idx.end * len]
        .iter()
        .map(|&b| b as f32 / 255.0)
        .collect();
    let x = Tensor::from_vec(data, &[idx.len(), ds.channels(), ds.height(), ds.width()], Device::Cpu)?;
    norm.apply(&x)
}

fn config_string(args: &Args, kind: LossKind) -> String {
    format!(
        "dataset={} per_class={} val_per_class={} arch={} width={} loss={} xent_weight={} epochs={} batch={} lr={} wd={} schedule={} seed={}",
        args.dataset,
        args.per_class,
        args.val_per_class,
        args.arch,
        args.width,
        kind.name(),
        args.xent_weight,
        args.epochs,
        args.batch,
        args.lr_for(kind),
        args.wd,
        args.schedule,
        args.seed
    )
}

/// The state of one run: the network, the optional head, their optimisers, the data RNG and
/// the metrics so far. Everything a checkpoint saves.
struct Trainer {
    kind: LossKind,
    xent_weight: f64,
    device: Device,
    model: ResNet<f32>,
    head: Option<Head>,
    opt: Sgd<f32>,
    head_opt: Option<Sgd<f32>>,
    rng: Rng,
    epoch: usize,
    rows: Vec<EpochMetrics>,
}

/// What one epoch of training measured.
struct EpochStats {
    /// The learning rate of the epoch's last step.
    lr: f64,
    loss: f64,
    accuracy: f64,
    images: usize,
}

/// Training throughput and memory across epochs (evaluation excluded), for the progress line,
/// the ETA and the final report.
#[derive(Default)]
struct Progress {
    train_secs: f64,
    images: usize,
    global_step: usize,
    memory: Vec<(usize, f64)>,
}

impl Progress {
    fn images_per_s(&self) -> f64 {
        self.images as f64 / self.train_secs.max(1e-9)
    }
}

impl Trainer {
    /// Builds the model (seeded on the CPU, then moved: the same initial weights on every
    /// device), the paper's head for `cosine-xent-head`, and SGD with momentum 0.9 for each.
    fn new(args: &Args, kind: LossKind, channels: usize, classes: usize, device: Device) -> Result<Self> {
        let lr = args.lr_for(kind);
        let momentum = 0.9;
        let model = build_model(args, channels, classes)?;
        smallgrad::nn::to_device(&model, device)?;
        let opt = Sgd::new(
            model.parameters(),
            SgdConfig {
                lr,
                momentum,
                weight_decay: args.wd,
                ..Default::default()
            },
        )?;
        let (head, head_opt) = if kind == LossKind::CosineXentHead {
            let h = Head::new(classes, args.seed)?;
            smallgrad::nn::to_device(&h.bn, device)?;
            smallgrad::nn::to_device(&h.fc, device)?;
            // The head's own L2 penalty: 1e-3 weight decay (the authors' 5e-4 * ||w||² penalty).
            let config = SgdConfig {
                lr,
                momentum,
                weight_decay: 1e-3,
                ..Default::default()
            };
            let o = Sgd::new(h.parameters(), config)?;
            (Some(h), Some(o))
        } else {
            (None, None)
        };
        Ok(Trainer {
            kind,
            xent_weight: args.xent_weight,
            device,
            model,
            head,
            opt,
            head_opt,
            rng: Rng::new(args.seed ^ 0xDA7A),
            epoch: 0,
            rows: Vec::new(),
        })
    }

    /// One SGD step on a batch: forward, loss, zero_grad, backward, step. Returns the loss and
    /// how many of the batch were classified correctly.
    fn train_step(&mut self, x: &Tensor<f32>, y: &[usize], lr: f64) -> Result<(f64, usize)> {
        let logits = self.model.forward(x)?;
        let (loss, scores) = loss_and_scores(self.kind, self.xent_weight, &logits, self.head.as_ref(), y)?;
        self.opt.set_lr(lr);
        self.opt.zero_grad();
        if let Some(ho) = &mut self.head_opt {
            ho.set_lr(lr);
            ho.zero_grad();
        }
        loss.backward()?;
        self.opt.step()?;
        if let Some(ho) = &mut self.head_opt {
            ho.step()?;
        }
        let correct = scores.argmax(1)?.iter().zip(y).filter(|(p, q)| p == q).count();
        Ok((loss.item()? as f64, correct))
    }

    /// One pass over `train` in a fresh shuffled, augmented order, printing a progress line.
    fn train_epoch(&mut self, plan: &Plan, progress: &mut Progress) -> Result<EpochStats> {
        let epoch_seed = self.rng.next_u64();
        let batches = Batches::new(plan.train, plan.batch, epoch_seed, false)?
            .with_augment(plan.augment)?
            .with_normalization(plan.norm.clone())?;
        let steps = plan.steps_per_epoch();
        let (mut loss_sum, mut correct, mut seen, mut lr) = (0.0f64, 0usize, 0usize, 0.0);
        for (step, (x, y)) in batches.enumerate() {
            let started = Instant::now();
            lr = plan.schedule.lr_at(self.epoch as f64 + step as f64 / steps as f64);
            let (loss, right) = self.train_step(&x.to_device(self.device)?, &y, lr)?;
            loss_sum += loss * y.len() as f64;
            correct += right;
            seen += y.len();
            progress.images += y.len();
            progress.global_step += 1;
            if plan.report_memory && (progress.global_step == 50 || progress.global_step == 500) {
                progress
                    .memory
                    .push((progress.global_step, rss_mib().unwrap_or(f64::NAN)));
            }
            progress.train_secs += started.elapsed().as_secs_f64();
            let remaining = (plan.epochs - self.epoch) * steps - (step + 1);
            let eta = remaining as f64 * plan.batch as f64 / progress.images_per_s().max(1e-9);
            eprint!(
                "\r[{}] epoch {}/{} step {}/{} loss {loss:.4} | {:.0} img/s | ETA {}   ",
                self.kind.name(),
                self.epoch + 1,
                plan.epochs,
                step + 1,
                steps,
                progress.images_per_s(),
                fmt_secs(eta)
            );
            let _ = std::io::stderr().flush();
        }
        self.epoch += 1;
        Ok(EpochStats {
            lr,
            loss: loss_sum / seen.max(1) as f64,
            accuracy: correct as f64 / seen.max(1) as f64,
            images: seen,
        })
    }

    /// Top-1 accuracy on `ds`, in evaluation mode, without recording a graph.
    fn evaluate(&mut self, ds: &Dataset, norm: &Normalization) -> Result<f64> {
        self.set_training(false);
        let mut correct = 0;
        let result = no_grad(|| -> Result<()> {
            for start in (0..ds.len()).step_by(500) {
                let end = (start + 500).min(ds.len());
                let x = batch_tensor(ds, start..end, norm)?.to_device(self.device)?;
                let logits = self.model.forward(&x)?;
                let scores = match &self.head {
                    Some(h) => h.forward(&logits.normalize(1, 1e-12)?)?,
                    None => logits,
                };
                let labels = &ds.labels()[start..end];
                correct += scores.argmax(1)?.iter().zip(labels).filter(|(p, t)| p == t).count();
            }
            Ok(())
        });
        self.set_training(true);
        result?;
        Ok(correct as f64 / ds.len().max(1) as f64)
    }

    fn set_training(&mut self, training: bool) {
        self.model.set_training(training);
        if let Some(h) = &mut self.head {
            h.bn.set_training(training);
        }
    }

    fn modules(&self) -> Vec<(&'static str, &dyn Module<f32>)> {
        let mut m: Vec<(&'static str, &dyn Module<f32>)> = vec![("model", &self.model)];
        if let Some(h) = &self.head {
            m.push(("head_bn", &h.bn));
            m.push(("head_fc", &h.fc));
        }
        m
    }

    /// Model, head, both optimisers' momenta, epoch, RNG state, configuration and the metrics
    /// so far, through the library's `checkpoint` module.
    fn save(&self, path: &Path, config: &str) -> Result<()> {
        let mut opts: Vec<(&str, &Sgd<f32>)> = vec![("opt", &self.opt)];
        if let Some(ho) = &self.head_opt {
            opts.push(("headopt", ho));
        }
        let metrics: Vec<String> = self.rows.iter().map(EpochMetrics::to_record).collect();
        let extra = [
            ("config".to_string(), config.to_string()),
            ("metrics".to_string(), metrics.join(";")),
        ];
        checkpoint::save(path, &self.modules(), &opts, self.epoch, &self.rng, &extra)
    }

    fn resume(&mut self, path: &Path, config: &str) -> Result<()> {
        // Refuse a checkpoint of another configuration before touching anything.
        let (_, meta) = smallgrad::serialize::load::<f32>(path)?;
        let saved = metadata(&meta, "config");
        if saved != config {
            return Err(Error::Io {
                path: path.display().to_string(),
                msg: format!("checkpoint was written by another configuration:\n  saved: {saved}\n  now:   {config}"),
            });
        }
        let mut modules: Vec<(&str, &dyn Module<f32>)> = vec![("model", &self.model)];
        if let Some(h) = &self.head {
            modules.push(("head_bn", &h.bn));
            modules.push(("head_fc", &h.fc));
        }
        let mut opts: Vec<(&str, &mut Sgd<f32>)> = vec![("opt", &mut self.opt)];
        if let Some(ho) = &mut self.head_opt {
            opts.push(("headopt", ho));
        }
        let state = checkpoint::load(path, &modules, &mut opts)?;
        self.epoch = state.epoch;
        self.rng = state.rng;
        self.rows = metadata(&state.metadata, "metrics")
            .split(';')
            .filter(|r| !r.is_empty())
            .map(EpochMetrics::from_record)
            .collect();
        Ok(())
    }
}

/// The value stored under `key` in a checkpoint's metadata ("" if absent).
fn metadata<'a>(meta: &'a [(String, String)], key: &str) -> &'a str {
    meta.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// What stays fixed for a whole run: the data, its augmentation and normalisation, the batch
/// size, the length and the learning-rate schedule.
struct Plan<'a> {
    train: &'a Dataset,
    augment: Augment,
    norm: Normalization,
    batch: usize,
    epochs: usize,
    schedule: Box<dyn LrSchedule>,
    report_memory: bool,
}

impl Plan<'_> {
    fn steps_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.batch)
    }
}

/// The training and evaluation sets of a run: K images per class, evaluated on a held-out
/// validation split (`--val-per-class`) or the test set (optionally its first `--test-limit`).
/// The K training images are the same either way (same seed).
fn split_data(args: &Args, data: &Loaded) -> Result<(Dataset, Dataset)> {
    if args.val_per_class > 0 {
        return data
            .train
            .split_per_class(args.per_class, args.val_per_class, args.seed);
    }
    let test = match args.test_limit {
        Some(n) if n < data.test.len() => data.test.subset(&(0..n).collect::<Vec<_>>())?,
        _ => data.test.clone(),
    };
    Ok((data.train.class_balanced_subset(args.per_class, args.seed)?, test))
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Trains `kind`'s run on `data`, writing `out`/metrics.csv after every epoch and calling
/// `on_epoch` with the epochs so far (the caller redraws its plot).
pub fn run(
    args: &Args,
    kind: LossKind,
    data: &Loaded,
    out: &Path,
    on_epoch: &mut dyn FnMut(&[EpochMetrics]),
) -> Result<RunResult> {
    let (train, test) = split_data(args, data)?;
    let norm = Normalization::from_dataset(&train)?;
    let plan = Plan {
        train: &train,
        augment: Augment {
            pad: if train.height() >= 32 { 4 } else { 2 },
            flip: args.dataset != DatasetKind::Mnist,
        },
        norm: norm.clone(),
        batch: args.batch,
        epochs: args.epochs,
        schedule: schedule(args, args.lr_for(kind)),
        report_memory: args.report_memory,
    };
    let device = match args.device {
        DeviceKind::Cuda => Device::Cuda(0),
        DeviceKind::Cpu => Device::Cpu,
    };
    let mut t = Trainer::new(args, kind, train.channels(), train.num_classes(), device)?;
    let config = config_string(args, kind);
    if let Some(path) = &args.resume {
        t.resume(path, &config)?;
        eprintln!(
            "[{}] resumed from {} after epoch {}",
            kind.name(),
            path.display(),
            t.epoch
        );
    }
    let io = |e: std::io::Error| Error::Io {
        path: out.display().to_string(),
        msg: e.to_string(),
    };
    std::fs::create_dir_all(out).map_err(io)?;
    let eval_set = if args.val_per_class > 0 { "validation" } else { "test" };
    let started = Instant::now();
    let mut progress = Progress {
        global_step: t.epoch * plan.steps_per_epoch(),
        ..Default::default()
    };

    while t.epoch < args.epochs {
        let epoch_start = Instant::now();
        let stats = t.train_epoch(&plan, &mut progress)?;
        let secs = epoch_start.elapsed().as_secs_f64();
        let accuracy = if t.epoch.is_multiple_of(args.eval_every) || t.epoch == args.epochs {
            eprint!(
                "\r[{}] epoch {}/{}: evaluating on {} {eval_set} images...        ",
                kind.name(),
                t.epoch,
                args.epochs,
                test.len()
            );
            Some(t.evaluate(&test, &norm)?)
        } else {
            None
        };
        let row = EpochMetrics {
            epoch: t.epoch,
            lr: stats.lr,
            train_loss: stats.loss,
            train_acc: stats.accuracy,
            test_acc: accuracy,
            seconds: secs,
            images_per_s: stats.images as f64 / secs.max(1e-9),
        };
        eprintln!(
            "\r[{}] epoch {:>3}/{}  loss {:.4}  train {:5.1}%{}  ({secs:.1}s, {:.0} img/s)            ",
            kind.name(),
            row.epoch,
            args.epochs,
            row.train_loss,
            100.0 * row.train_acc,
            accuracy
                .map(|a| format!("  {eval_set} {:5.2}%", 100.0 * a))
                .unwrap_or_default(),
            row.images_per_s
        );
        t.rows.push(row);
        write_csv(&out.join("metrics.csv"), &t.rows).map_err(io)?;
        on_epoch(&t.rows);
        if let Some(path) = &args.save {
            t.save(path, &config)?;
        }
        if args.stop_after == Some(t.epoch) && t.epoch < args.epochs {
            eprintln!(
                "[{}] stopping after epoch {} as asked (--stop-after)",
                kind.name(),
                t.epoch
            );
            break;
        }
    }
    if args.report_memory {
        progress
            .memory
            .push((progress.global_step, rss_mib().unwrap_or(f64::NAN)));
    }
    Ok(RunResult {
        loss: kind,
        lr: args.lr_for(kind),
        test_acc: t.rows.iter().rev().find_map(|r| r.test_acc).unwrap_or(f64::NAN),
        rows: t.rows,
        images_per_s: progress.images_per_s(),
        seconds: started.elapsed().as_secs_f64(),
        memory: progress.memory,
        peak_rss_mib: peak_rss_mib(),
    })
}
