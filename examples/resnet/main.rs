//! The main job: train a ResNet from scratch on a small class-balanced subset of a real dataset
//! and compare cross-entropy with the cosine loss of Barz & Denzler (WACV 2020).
//!
//! `cargo run --release --example resnet` runs the comparison in miniature (Fashion-MNIST, 50
//! images per class, ResNet-20, xent vs cosine + 0.1 xent, one seed) and prints a table in the
//! format of the seed post. `--help` lists every flag.

mod args;
mod dataset;
mod report;
mod train;

use args::{Args, LossKind};
use smallgrad::Device;
use std::process::ExitCode;

fn loss_label(kind: LossKind, xent_weight: f64) -> String {
    match kind {
        LossKind::Xent => "cross-entropy".into(),
        LossKind::Cosine => "cosine".into(),
        LossKind::CosineXent => format!("cosine + {xent_weight} * cross-entropy"),
        LossKind::CosineXentHead => format!("cosine + {xent_weight} * cross-entropy (extra head)"),
    }
}

fn arch_label(arch: &str) -> String {
    match arch.strip_prefix("resnet") {
        Some(d) => format!("ResNet-{d}"),
        None => arch.to_string(),
    }
}

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
    match args.device.as_str() {
        "cpu" => {}
        "cuda" => Device::Cuda(0).check_available()?,
        other => {
            return Err(smallgrad::Error::InvalidArgument {
                op: "--device",
                msg: format!("unknown device {other} (cpu, cuda)"),
            });
        }
    }
    let data = dataset::load(&args.dataset, &args.data, args.per_class, args.seed)?;
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
    println!(
        "protocol: {} (width {}), {} images per class, {} epochs, batch {}, SGD momentum 0.9, lr {} ({} schedule), wd {}, seed {}, {} threads",
        arch_label(&args.arch),
        args.width,
        args.per_class,
        args.epochs,
        args.batch,
        args.lr,
        args.schedule,
        args.wd,
        args.seed,
        rayon::current_num_threads()
    );
    let losses: Vec<LossKind> = if args.compare {
        vec![LossKind::Xent, LossKind::CosineXent]
    } else {
        vec![args.loss.unwrap()]
    };
    let mut results = Vec::new();
    for &kind in &losses {
        let out = if losses.len() > 1 {
            args.out.join(kind.name())
        } else {
            args.out.clone()
        };
        let r = if args.profile {
            let (r, prof) = smallgrad::profile(|| train::run(&args, kind, &data, &out));
            println!(
                "[{}] per-op profile (this thread's ops, training and evaluation):\n{prof}",
                kind.name()
            );
            r?
        } else {
            train::run(&args, kind, &data, &out)?
        };
        println!(
            "[{}] top-1 {:.2}% | {:.0} s | {:.1} train images/s | wrote {} and {}",
            kind.name(),
            100.0 * r.test_acc,
            r.seconds,
            r.images_per_s,
            out.join("metrics.csv").display(),
            out.join("curves.svg").display()
        );
        if args.report_memory {
            for (step, mib) in &r.memory {
                println!("[{}] resident memory after step {step}: {mib:.1} MiB", kind.name());
            }
            if let Some(p) = r.peak_rss_mib {
                println!("[{}] peak resident memory: {p:.1} MiB", kind.name());
            }
        }
        results.push(r);
    }
    println!();
    if data.synthetic {
        println!("(SYNTHETIC data: these numbers are a smoke test, not a result.)");
    }
    println!(
        "{}, {} images per class, {} epochs, seed {}:",
        data.source, args.per_class, args.epochs, args.seed
    );
    println!();
    println!("| Model (loss) | Top-1 accuracy (%) |");
    println!("|---|---|");
    for r in &results {
        println!(
            "| {} ({}) | {:.2} |",
            arch_label(&args.arch),
            loss_label(r.loss, args.xent_weight),
            100.0 * r.test_acc
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nerror: {e}");
            ExitCode::FAILURE
        }
    }
}
