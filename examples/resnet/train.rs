//! One training run: model, loss, optimiser, schedule, the epoch loop, evaluation and
//! checkpoints.

use crate::args::{Args, LossKind};
use crate::dataset::Loaded;
use crate::report::{EpochMetrics, peak_rss_mib, rss_mib, write_csv, write_svg};
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
    match args.arch.as_str() {
        "resnet20" => cifar(20),
        "resnet32" => cifar(32),
        "resnet44" => cifar(44),
        "resnet56" => cifar(56),
        "resnet110" => cifar(110),
        "resnet18" => resnet18(&imagenet),
        "resnet34" => resnet34(&imagenet),
        "resnet50" => resnet50(&imagenet),
        other => Err(Error::InvalidArgument {
            op: "--arch",
            msg: format!("unknown architecture {other}"),
        }),
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

fn schedule(args: &Args) -> Box<dyn LrSchedule> {
    match args.schedule.as_str() {
        "step" => Box::new(StepDecay {
            base_lr: args.lr,
            step_size: (args.epochs / 3).max(1),
            gamma: 0.1,
        }),
        // SGDR as the paper: cycles T0, 2 T0, 4 T0, ...; T0 chosen so that cycles fill the run.
        "sgdr" => Box::new(WarmRestarts {
            base_lr: args.lr,
            min_lr: 1e-6,
            t0: (args.epochs / 7).max(1),
            t_mult: 2,
        }),
        "constant" => Box::new(StepDecay {
            base_lr: args.lr,
            step_size: usize::MAX,
            gamma: 1.0,
        }),
        _ => Box::new(CosineAnnealing {
            base_lr: args.lr,
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

/// Top-1 accuracy on `ds`, in evaluation mode, without recording a graph.
fn evaluate(
    model: &mut ResNet<f32>,
    head: &mut Option<Head>,
    kind: LossKind,
    ds: &Dataset,
    norm: &Normalization,
    device: Device,
) -> Result<f64> {
    model.set_training(false);
    if let Some(h) = head.as_mut() {
        h.bn.set_training(false);
    }
    let mut correct = 0;
    let result = no_grad(|| -> Result<()> {
        for start in (0..ds.len()).step_by(500) {
            let end = (start + 500).min(ds.len());
            let x = batch_tensor(ds, start..end, norm)?.to_device(device)?;
            let logits = model.forward(&x)?;
            let scores = match (kind, head.as_ref()) {
                (LossKind::CosineXentHead, Some(h)) => h.forward(&logits.normalize(1, 1e-12)?)?,
                _ => logits,
            };
            let pred = scores.argmax(1)?;
            correct += pred
                .iter()
                .zip(&ds.labels()[start..end])
                .filter(|(p, t)| p == t)
                .count();
        }
        Ok(())
    });
    model.set_training(true);
    if let Some(h) = head.as_mut() {
        h.bn.set_training(true);
    }
    result?;
    Ok(correct as f64 / ds.len().max(1) as f64)
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
        args.lr,
        args.wd,
        args.schedule,
        args.seed
    )
}

struct Trainer {
    model: ResNet<f32>,
    head: Option<Head>,
    opt: Sgd<f32>,
    head_opt: Option<Sgd<f32>>,
    rng: Rng,
    epoch: usize,
    rows: Vec<EpochMetrics>,
}

impl Trainer {
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
        let saved = meta
            .iter()
            .find(|(k, _)| k == "config")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
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
        let metrics = state
            .metadata
            .iter()
            .find(|(k, _)| k == "metrics")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        self.rows = metrics
            .split(';')
            .filter(|r| !r.is_empty())
            .map(EpochMetrics::from_record)
            .collect();
        Ok(())
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

pub fn run(args: &Args, kind: LossKind, data: &Loaded, out: &Path) -> Result<RunResult> {
    let classes = data.train.num_classes();
    // The same K training images with or without a validation split (same seed).
    let (train, test) = if args.val_per_class > 0 {
        data.train
            .split_per_class(args.per_class, args.val_per_class, args.seed)?
    } else {
        let test = match args.test_limit {
            Some(n) if n < data.test.len() => data.test.subset(&(0..n).collect::<Vec<_>>())?,
            _ => data.test.clone(),
        };
        (data.train.class_balanced_subset(args.per_class, args.seed)?, test)
    };
    let norm = Normalization::from_dataset(&train)?;
    let pad = if train.height() >= 32 { 4 } else { 2 };
    let augment = Augment {
        pad,
        flip: args.dataset != "mnist",
    };

    let device = if args.device == "cuda" {
        Device::Cuda(0)
    } else {
        Device::Cpu
    };
    let model = build_model(args, train.channels(), classes)?;
    // Built (and seeded) on the CPU, then moved: the same initial weights on every device.
    smallgrad::nn::to_device(&model, device)?;
    let momentum = 0.9;
    let opt = Sgd::new(
        model.parameters(),
        SgdConfig {
            lr: args.lr,
            momentum,
            weight_decay: args.wd,
            ..Default::default()
        },
    )?;
    let head = if kind == LossKind::CosineXentHead {
        let h = Head::new(classes, args.seed)?;
        smallgrad::nn::to_device(&h.bn, device)?;
        smallgrad::nn::to_device(&h.fc, device)?;
        Some(h)
    } else {
        None
    };
    // The head's own L2 penalty: 1e-3 weight decay (the authors' 5e-4 * ||w||² penalty).
    let head_opt = match &head {
        Some(h) => Some(Sgd::new(
            h.parameters(),
            SgdConfig {
                lr: args.lr,
                momentum,
                weight_decay: 1e-3,
                ..Default::default()
            },
        )?),
        None => None,
    };
    let mut t = Trainer {
        model,
        head,
        opt,
        head_opt,
        rng: Rng::new(args.seed ^ 0xDA7A),
        epoch: 0,
        rows: Vec::new(),
    };
    let config = config_string(args, kind);
    let eval_set = if args.val_per_class > 0 { "validation" } else { "test" };
    if let Some(path) = &args.resume {
        t.resume(path, &config)?;
        eprintln!(
            "[{}] resumed from {} after epoch {}",
            kind.name(),
            path.display(),
            t.epoch
        );
    }
    let sched = schedule(args);
    let steps = train.len().div_ceil(args.batch);
    let label = kind.name();
    let started = Instant::now();
    // Training time only (evaluation excluded), for images/s and the ETA.
    let mut train_secs = 0.0f64;
    let mut trained_images = 0usize;
    let mut memory = Vec::new();
    let mut global_step = t.epoch * steps;
    let mut test_acc = t.rows.iter().rev().find_map(|r| r.test_acc).unwrap_or(f64::NAN);
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.display().to_string(),
        msg: e.to_string(),
    })?;

    while t.epoch < args.epochs {
        let epoch_start = Instant::now();
        let epoch_seed = t.rng.next_u64();
        let batches = Batches::new(&train, args.batch, epoch_seed, false)?
            .with_augment(augment)?
            .with_normalization(norm.clone())?;
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = args.lr;
        for (step, (x, y)) in batches.enumerate() {
            let step_start = Instant::now();
            let x = x.to_device(device)?;
            lr = sched.lr_at(t.epoch as f64 + step as f64 / steps as f64);
            t.opt.set_lr(lr);
            let logits = t.model.forward(&x)?;
            let (loss, scores) = loss_and_scores(kind, args.xent_weight, &logits, t.head.as_ref(), &y)?;
            t.opt.zero_grad();
            if let Some(ho) = &mut t.head_opt {
                ho.zero_grad();
                ho.set_lr(lr);
            }
            loss.backward()?;
            t.opt.step()?;
            if let Some(ho) = &mut t.head_opt {
                ho.step()?;
            }
            let l = loss.item()? as f64;
            loss_sum += l * y.len() as f64;
            correct += scores.argmax(1)?.iter().zip(&y).filter(|(p, q)| p == q).count();
            seen += y.len();
            trained_images += y.len();
            global_step += 1;
            if args.report_memory && (global_step == 50 || global_step == 500) {
                memory.push((global_step, rss_mib().unwrap_or(f64::NAN)));
            }
            train_secs += step_start.elapsed().as_secs_f64();
            let ips = trained_images as f64 / train_secs.max(1e-9);
            let remaining = (args.epochs - t.epoch) * steps - (step + 1);
            let eta = remaining as f64 * args.batch as f64 / ips.max(1e-9);
            eprint!(
                "\r[{label}] epoch {}/{} step {}/{} loss {:.4} | {:.0} img/s | ETA {}   ",
                t.epoch + 1,
                args.epochs,
                step + 1,
                steps,
                l,
                ips,
                fmt_secs(eta)
            );
            let _ = std::io::stderr().flush();
        }
        t.epoch += 1;
        let secs = epoch_start.elapsed().as_secs_f64();
        let evaluate_now = t.epoch.is_multiple_of(args.eval_every) || t.epoch == args.epochs;
        let acc = if evaluate_now {
            eprint!(
                "\r[{label}] epoch {}/{}: evaluating on {} {eval_set} images...        ",
                t.epoch,
                args.epochs,
                test.len()
            );
            let a = evaluate(&mut t.model, &mut t.head, kind, &test, &norm, device)?;
            test_acc = a;
            Some(a)
        } else {
            None
        };
        t.rows.push(EpochMetrics {
            epoch: t.epoch,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            test_acc: acc,
            seconds: secs,
            images_per_s: seen as f64 / secs.max(1e-9),
        });
        let r = t.rows.last().unwrap();
        eprintln!(
            "\r[{label}] epoch {:>3}/{}  loss {:.4}  train {:5.1}%{}  ({:.1}s, {:.0} img/s)            ",
            r.epoch,
            args.epochs,
            r.train_loss,
            100.0 * r.train_acc,
            acc.map(|a| format!("  {eval_set} {:5.2}%", 100.0 * a))
                .unwrap_or_default(),
            secs,
            r.images_per_s
        );
        let io = |e: std::io::Error| Error::Io {
            path: out.display().to_string(),
            msg: e.to_string(),
        };
        write_csv(&out.join("metrics.csv"), &t.rows).map_err(io)?;
        write_svg(
            &out.join("curves.svg"),
            &format!("{} on {} ({})", args.arch, data.source, label),
            &t.rows,
        )
        .map_err(io)?;
        if let Some(path) = &args.save {
            t.save(path, &config)?;
        }
        if args.stop_after == Some(t.epoch) && t.epoch < args.epochs {
            eprintln!("[{label}] stopping after epoch {} as asked (--stop-after)", t.epoch);
            break;
        }
    }
    if args.report_memory {
        memory.push((global_step, rss_mib().unwrap_or(f64::NAN)));
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(RunResult {
        loss: kind,
        test_acc,
        images_per_s: trained_images as f64 / train_secs.max(1e-9),
        seconds,
        memory,
        peak_rss_mib: peak_rss_mib(),
    })
}
