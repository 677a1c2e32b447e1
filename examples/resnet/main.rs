//! The main job: train a ResNet from scratch on a small class-balanced subset of a real dataset
//! and compare cross-entropy with the cosine loss of Barz & Denzler (WACV 2020).
//!
//! `cargo run --release --example resnet` runs the comparison in miniature: ResNet-20 on 50
//! Fashion-MNIST images per class, cross-entropy and the seed's cosine + 0.1 cross-entropy, each
//! at the learning rate the full protocol chose for it on a validation split, one seed; then a
//! table beside the seed post's numbers, and one SVG of both runs. On a machine without
//! Fashion-MNIST it trains on the subset bundled in data/fashion-mnist-subset. `--help` lists
//! every flag.

mod args;
mod dataset;
mod report;
mod sha256;
mod train;

use args::{Args, DeviceKind, LossKind};
use clap::Parser;
use report::{COLORS, Series, write_comparison_svg};
use smallgrad::Device;
use std::path::Path;
use std::process::ExitCode;

fn loss_label(kind: LossKind, xent_weight: f64) -> String {
    match kind {
        LossKind::Xent => "cross-entropy".into(),
        LossKind::Cosine => "cosine".into(),
        LossKind::CosineXent => format!("cosine + {xent_weight} * cross-entropy"),
        LossKind::CosineXentHead => format!("cosine + {xent_weight} * cross-entropy (extra head)"),
    }
}

/// The seed post's top-1 for this loss (ResNet-50, an ImageNet subset of 50 images per class).
fn seed_result(kind: LossKind) -> Option<f64> {
    match kind {
        LossKind::Xent => Some(26.39),
        LossKind::CosineXent => Some(34.01),
        _ => None,
    }
}

/// The final table, in the seed post's format with its numbers beside ours.
fn table(args: &Args, results: &[train::RunResult]) -> Vec<String> {
    let mut t = vec![
        "| Model (loss) | lr | Top-1 accuracy (%) | the seed: ResNet-50, Top-1 (%) |".to_string(),
        "|---|---:|---:|---:|".to_string(),
    ];
    for r in results {
        t.push(format!(
            "| {} ({}) | {} | {:.2} | {} |",
            args.arch.label(),
            loss_label(r.loss, args.xent_weight),
            r.lr,
            100.0 * r.test_acc,
            seed_result(r.loss)
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "—".into())
        ));
    }
    t
}

/// One SVG of every run so far (`current`: the rows of the run in progress).
fn plot(
    args: &Args,
    data: &dataset::Loaded,
    done: &[train::RunResult],
    current: Option<(LossKind, &[report::EpochMetrics])>,
) {
    let mut runs: Vec<Series> = done
        .iter()
        .map(|r| Series {
            label: format!("{} (lr {})", loss_label(r.loss, args.xent_weight), r.lr),
            color: "",
            rows: &r.rows,
        })
        .collect();
    if let Some((kind, rows)) = current {
        runs.push(Series {
            label: format!(
                "{} (lr {}, running)",
                loss_label(kind, args.xent_weight),
                args.lr_for(kind)
            ),
            color: "",
            rows,
        });
    }
    for (i, r) in runs.iter_mut().enumerate() {
        r.color = COLORS[i % COLORS.len()];
    }
    let dataset = if data.synthetic {
        "SYNTHETIC data"
    } else {
        args.dataset.title()
    };
    let title = format!(
        "{} on {dataset}, {} images per class, {} epochs: top-1 on {} test images",
        args.arch.label(),
        args.per_class,
        args.epochs,
        args.test_limit.unwrap_or(data.test.len()).min(data.test.len())
    );
    let mut notes: Vec<String> = done
        .iter()
        .map(|r| {
            format!(
                "{} (lr {}): {:.2} % top-1",
                loss_label(r.loss, args.xent_weight),
                r.lr,
                100.0 * r.test_acc
            )
        })
        .collect();
    notes.push("The seed post: ResNet-50 on an ImageNet subset of 50 images per class, 90 epochs: cross-entropy 26.39 %, cosine + 0.1 * cross-entropy 34.01 %".into());
    let name = if args.comparing() {
        "comparison.svg"
    } else {
        "curves.svg"
    };
    if let Err(e) = write_comparison_svg(&args.out.join(name), &title, &runs, &notes) {
        eprintln!("\nwarning: could not write {}: {e}", args.out.join(name).display());
    }
}

/// The whole job: load the data, train each loss in turn, print the comparison.
fn run(args: Args) -> smallgrad::Result<()> {
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| smallgrad::Error::InvalidArgument {
                op: "--threads",
                msg: e.to_string(),
            })?;
    }
    if args.device == DeviceKind::Cuda {
        Device::Cuda(0).check_available()?;
    }
    let data = dataset::load(args.dataset, args.data.as_deref(), args.per_class, args.seed)?;
    print_setup(&args, &data);
    std::fs::create_dir_all(&args.out).map_err(|e| smallgrad::Error::Io {
        path: args.out.display().to_string(),
        msg: e.to_string(),
    })?;
    let mut results: Vec<train::RunResult> = Vec::new();
    for kind in args.losses() {
        let r = train_one(&args, &data, kind, &results)?;
        results.push(r);
        plot(&args, &data, &results, None);
    }
    print_summary(&args, &data, &results);
    Ok(())
}

/// The first lines: where the data came from and its sizes, then the protocol.
fn print_setup(args: &Args, data: &dataset::Loaded) {
    println!(
        "data: {} | train pool {} images, test {} images, {} classes, {}x{}x{}",
        data.source,
        data.train.len(),
        data.test.len(),
        data.train.num_classes(),
        data.train.channels(),
        data.train.height(),
        data.train.width()
    );
    if data.bundled && (args.per_class > 50 || args.val_per_class > 0) {
        eprintln!(
            "note: the bundled subset holds 50 training images per class; for --per-class above 50 or \
             --val-per-class install the full set (docs/data.md)"
        );
    }
    let lrs: Vec<String> = args
        .losses()
        .iter()
        .map(|&k| format!("{} {}", k.name(), args.lr_for(k)))
        .collect();
    println!(
        "protocol: {} (width {}), {} images per class, {} epochs, batch {}, SGD momentum 0.9, lr {} ({} schedule{}), wd {}, seed {}, {} threads",
        args.arch.label(),
        args.width,
        args.per_class,
        args.epochs,
        args.batch,
        lrs.join(", "),
        args.schedule,
        if args.lr.is_none() {
            ", each loss's tuned lr"
        } else {
            ""
        },
        args.wd,
        args.seed,
        rayon::current_num_threads()
    );
}

/// Trains one loss (under the op profiler with `--profile`), redrawing the picture after every
/// epoch, and prints its one-line result.
fn train_one(
    args: &Args,
    data: &dataset::Loaded,
    kind: LossKind,
    done: &[train::RunResult],
) -> smallgrad::Result<train::RunResult> {
    let out = if args.comparing() {
        args.out.join(kind.name())
    } else {
        args.out.clone()
    };
    let mut on_epoch = |rows: &[report::EpochMetrics]| plot(args, data, done, Some((kind, rows)));
    let r = if args.profile {
        let (r, prof) = smallgrad::profile(|| train::run(args, kind, data, &out, &mut on_epoch));
        println!(
            "[{}] per-op profile (this thread's ops, training and evaluation):\n{prof}",
            kind.name()
        );
        r?
    } else {
        train::run(args, kind, data, &out, &mut on_epoch)?
    };
    println!(
        "[{}] top-1 {:.2}% | {:.0} s | {:.1} train images/s | wrote {}",
        kind.name(),
        100.0 * r.test_acc,
        r.seconds,
        r.images_per_s,
        out.join("metrics.csv").display()
    );
    if args.report_memory {
        for (step, mib) in &r.memory {
            println!("[{}] resident memory after step {step}: {mib:.1} MiB", kind.name());
        }
        if let Some(p) = r.peak_rss_mib {
            println!("[{}] peak resident memory: {p:.1} MiB", kind.name());
        }
    }
    Ok(r)
}

/// The table beside the seed's numbers, what differs, and where the picture is.
fn print_summary(args: &Args, data: &dataset::Loaded, results: &[train::RunResult]) {
    println!();
    if data.synthetic {
        println!("(SYNTHETIC data: these numbers are a smoke test, not a result.)");
    }
    println!(
        "{}, {} images per class, {} epochs, seed {}:",
        data.source, args.per_class, args.epochs, args.seed
    );
    println!();
    for line in table(args, results) {
        println!("{line}");
    }
    println!();
    println!(
        "What differs from the seed: it trained ResNet-50 on an ImageNet subset (50 images per class of 1000, \
         224x224 colour, 90 epochs); this is {} on {} ({} images per class of {}, {}x{}x{}, {} epochs).",
        args.arch.label(),
        args.dataset.title(),
        args.per_class,
        data.train.num_classes(),
        data.train.channels(),
        data.train.height(),
        data.train.width(),
        args.epochs
    );
    let svg = args.out.join(if args.comparing() {
        "comparison.svg"
    } else {
        "curves.svg"
    });
    println!("Plot: {}", Path::new(&svg).display());
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(msg) = args.check() {
        eprintln!("error: {msg}");
        return ExitCode::from(2);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nerror: {e}");
            ExitCode::FAILURE
        }
    }
}
