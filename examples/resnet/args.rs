//! Command-line flags of the ResNet example (hand-parsed: the example adds no CLI crate).

use std::path::PathBuf;

pub const HELP: &str = "\
Train a ResNet from scratch on a small class-balanced subset and compare cross-entropy with the
cosine loss (Barz & Denzler, WACV 2020).

USAGE: cargo run --release --example resnet -- [FLAGS]

With no flags: the comparison in miniature (xent vs cosine-xent on Fashion-MNIST, 50 images per
class, a reduced number of epochs, one seed), then a markdown table.

FLAGS:
  --dataset NAME       fashion-mnist (default), mnist, cifar10, synthetic
  --data DIR           dataset folder (default /usr/share/datasets/fashion-mnist)
  --per-class K        training images per class (default 50)
  --arch NAME          resnet20|resnet32|resnet44|resnet56|resnet110 (CIFAR layout, default resnet20),
                       resnet18|resnet34|resnet50 (ImageNet layout, small-input stem)
  --width W            width multiplier of the CIFAR layout (default 1)
  --loss NAME          xent | cosine | cosine-xent | cosine-xent-head (default: --compare)
  --xent-weight L      weight of the cross-entropy term (default 0.1)
  --epochs E           epochs (default 30: the miniature comparison)
  --batch B            batch size (default 64)
  --lr LR              maximum learning rate (default 0.05)
  --wd WD              weight decay (default 5e-4)
  --schedule NAME      cosine (default) | step | sgdr | constant
  --seed S             seed of subset, init, shuffling and augmentation (default 0)
  --threads N          rayon threads (default: all cores)
  --device NAME        cpu (default) | cuda (needs `--features cuda` and a GPU)
  --eval-every N       evaluate on the test set every N epochs (default: 10, and the last epoch)
  --test-limit N       evaluate on the first N test images only (default: the full test set)
  --val-per-class V    hold out V further training-pool images per class (disjoint from the
                       K training images, same seed) and report accuracy on them instead of
                       the test set: for choosing the learning rate without touching the test set
  --save FILE          write a checkpoint (safetensors) after every epoch
  --resume FILE        continue from a checkpoint written by --save
  --stop-after E       stop after epoch E (with --save: split a long run across sessions;
                       --resume continues it bit-identically)
  --compare            run xent and cosine-xent with the same data and seed; print a table
  --out DIR            where metrics.csv and the SVG plots go (default out/resnet)
  --report-memory      print resident memory at steps 50 and 500 (and the end)
  --profile            print a per-op time table (forward and backward) after each run
  -h, --help           this text
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    Xent,
    Cosine,
    CosineXent,
    CosineXentHead,
}

impl LossKind {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "xent" => LossKind::Xent,
            "cosine" => LossKind::Cosine,
            "cosine-xent" => LossKind::CosineXent,
            "cosine-xent-head" => LossKind::CosineXentHead,
            _ => {
                return Err(format!(
                    "unknown --loss {s:?} (xent, cosine, cosine-xent, cosine-xent-head)"
                ));
            }
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Xent => "xent",
            LossKind::Cosine => "cosine",
            LossKind::CosineXent => "cosine-xent",
            LossKind::CosineXentHead => "cosine-xent-head",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Args {
    pub dataset: String,
    pub data: PathBuf,
    pub per_class: usize,
    pub arch: String,
    pub width: usize,
    pub loss: Option<LossKind>,
    pub xent_weight: f64,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub wd: f64,
    pub schedule: String,
    pub seed: u64,
    pub threads: Option<usize>,
    pub device: String,
    pub eval_every: usize,
    pub test_limit: Option<usize>,
    pub val_per_class: usize,
    pub save: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub stop_after: Option<usize>,
    pub compare: bool,
    pub out: PathBuf,
    pub report_memory: bool,
    pub profile: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            dataset: "fashion-mnist".into(),
            data: PathBuf::from("/usr/share/datasets/fashion-mnist"),
            per_class: 50,
            arch: "resnet20".into(),
            width: 1,
            loss: None,
            xent_weight: 0.1,
            epochs: 30,
            batch: 64,
            lr: 0.05,
            wd: 5e-4,
            schedule: "cosine".into(),
            seed: 0,
            threads: None,
            device: "cpu".into(),
            eval_every: 10,
            test_limit: None,
            val_per_class: 0,
            save: None,
            resume: None,
            stop_after: None,
            compare: false,
            out: PathBuf::from("out/resnet"),
            report_memory: false,
            profile: false,
        }
    }
}

fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse().map_err(|_| format!("{flag}: cannot parse {v:?}"))
}

/// Parses the flags; `Ok(None)` means `--help` was printed.
pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args::default();
    let mut data_given = false;
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            "--dataset" => a.dataset = value(&flag, it.next())?,
            "--data" => {
                a.data = value::<String>(&flag, it.next())?.into();
                data_given = true;
            }
            "--per-class" => a.per_class = value(&flag, it.next())?,
            "--arch" => a.arch = value(&flag, it.next())?,
            "--width" => a.width = value(&flag, it.next())?,
            "--loss" => a.loss = Some(LossKind::parse(&value::<String>(&flag, it.next())?)?),
            "--xent-weight" => a.xent_weight = value(&flag, it.next())?,
            "--epochs" => a.epochs = value(&flag, it.next())?,
            "--batch" => a.batch = value(&flag, it.next())?,
            "--lr" => a.lr = value(&flag, it.next())?,
            "--wd" => a.wd = value(&flag, it.next())?,
            "--schedule" => a.schedule = value(&flag, it.next())?,
            "--seed" => a.seed = value(&flag, it.next())?,
            "--threads" => a.threads = Some(value(&flag, it.next())?),
            "--device" => a.device = value(&flag, it.next())?,
            "--eval-every" => a.eval_every = value(&flag, it.next())?,
            "--test-limit" => a.test_limit = Some(value(&flag, it.next())?),
            "--val-per-class" => a.val_per_class = value(&flag, it.next())?,
            "--save" => a.save = Some(value::<String>(&flag, it.next())?.into()),
            "--resume" => a.resume = Some(value::<String>(&flag, it.next())?.into()),
            "--stop-after" => a.stop_after = Some(value(&flag, it.next())?),
            "--compare" => a.compare = true,
            "--out" => a.out = value::<String>(&flag, it.next())?.into(),
            "--report-memory" => a.report_memory = true,
            "--profile" => a.profile = true,
            other => return Err(format!("unknown flag {other:?}; see --help")),
        }
    }
    if !data_given {
        match a.dataset.as_str() {
            "mnist" => a.data = PathBuf::from("/usr/share/datasets/mnist"),
            "cifar10" => a.data = PathBuf::from("/usr/share/datasets/cifar10"),
            _ => {}
        }
    }
    if !["fashion-mnist", "mnist", "cifar10", "synthetic"].contains(&a.dataset.as_str()) {
        return Err(format!(
            "unknown --dataset {:?} (fashion-mnist, mnist, cifar10, synthetic)",
            a.dataset
        ));
    }
    if !["cosine", "step", "sgdr", "constant"].contains(&a.schedule.as_str()) {
        return Err(format!(
            "unknown --schedule {:?} (cosine, step, sgdr, constant)",
            a.schedule
        ));
    }
    if a.per_class == 0 || a.batch == 0 || a.epochs == 0 || a.eval_every == 0 {
        return Err("--per-class, --batch, --epochs and --eval-every must be at least 1".into());
    }
    if a.loss.is_none() {
        a.compare = true;
    }
    if a.compare && a.loss.is_some() {
        return Err("--compare runs xent and cosine-xent itself; drop --loss".into());
    }
    if a.compare && (a.save.is_some() || a.resume.is_some()) {
        return Err("--save/--resume work with a single run (--loss NAME), not with --compare".into());
    }
    Ok(Some(a))
}
