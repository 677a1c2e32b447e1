//! Outputs of a run: metrics.csv, an SVG plot of the curves, resident memory.

use std::fmt::Write as _;
use std::path::Path;

/// One epoch's numbers.
#[derive(Debug, Clone)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    /// Top-1 on the test set, when evaluated this epoch.
    pub test_acc: Option<f64>,
    pub seconds: f64,
    pub images_per_s: f64,
}

impl EpochMetrics {
    /// A space-separated record, for the checkpoint's metadata.
    pub fn to_record(&self) -> String {
        let test = self.test_acc.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        format!(
            "{} {} {} {} {} {} {}",
            self.epoch, self.lr, self.train_loss, self.train_acc, test, self.seconds, self.images_per_s
        )
    }

    /// Parses [`to_record`](Self::to_record)'s output (unparsable numbers become NaN).
    pub fn from_record(rec: &str) -> Self {
        let f: Vec<&str> = rec.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
        EpochMetrics {
            epoch: f.first().and_then(|v| v.parse().ok()).unwrap_or(0),
            lr: num(1),
            train_loss: num(2),
            train_acc: num(3),
            test_acc: f.get(4).and_then(|v| v.parse().ok()),
            seconds: num(5),
            images_per_s: num(6),
        }
    }
}

pub fn write_csv(path: &Path, rows: &[EpochMetrics]) -> std::io::Result<()> {
    let mut s = String::from("epoch,lr,train_loss,train_acc,test_acc,seconds,images_per_s\n");
    for r in rows {
        let test = r.test_acc.map(|a| format!("{a:.4}")).unwrap_or_default();
        writeln!(
            s,
            "{},{:.6},{:.6},{:.4},{},{:.2},{:.1}",
            r.epoch, r.lr, r.train_loss, r.train_acc, test, r.seconds, r.images_per_s
        )
        .unwrap();
    }
    std::fs::write(path, s)
}

/// A two-panel SVG: training loss per epoch (left) and accuracy (right: train, and test where
/// evaluated). Plain SVG, no dependencies.
pub fn write_svg(path: &Path, title: &str, rows: &[EpochMetrics]) -> std::io::Result<()> {
    let (w, h, pad) = (900.0, 360.0, 50.0);
    let panel_w = (w - 3.0 * pad) / 2.0;
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    )
    .unwrap();
    writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#).unwrap();
    writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        xml(title)
    )
    .unwrap();
    let max_epoch = rows.last().map(|r| r.epoch as f64).unwrap_or(1.0).max(1.0);
    let loss_max = rows
        .iter()
        .map(|r| r.train_loss)
        .filter(|v| v.is_finite())
        .fold(1e-9, f64::max);
    let panels = [
        (pad, "training loss", loss_max),
        (2.0 * pad + panel_w, "top-1 accuracy", 1.0),
    ];
    for (x0, label, ymax) in panels {
        let (y0, ph) = (40.0, h - 90.0);
        writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{panel_w}" height="{ph}" fill="none" stroke="#888"/>"##
        )
        .unwrap();
        writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{label}</text>"#,
            x0 + panel_w / 2.0,
            h - 20.0
        )
        .unwrap();
        for k in 0..=4 {
            let v = ymax * k as f64 / 4.0;
            let y = y0 + ph - ph * k as f64 / 4.0;
            writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end" font-size="10">{v:.2}</text>"#,
                x0 - 4.0,
                y + 3.0
            )
            .unwrap();
        }
        writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="10">epoch {max_epoch}</text>"#,
            x0 + panel_w - 50.0,
            y0 + ph + 14.0
        )
        .unwrap();
        let px = |e: f64| x0 + panel_w * e / max_epoch;
        let py = |v: f64| y0 + ph - ph * (v / ymax).clamp(0.0, 1.0);
        let series: Vec<(&str, Vec<(f64, f64)>)> = if label == "training loss" {
            vec![("#1f77b4", rows.iter().map(|r| (r.epoch as f64, r.train_loss)).collect())]
        } else {
            vec![
                ("#1f77b4", rows.iter().map(|r| (r.epoch as f64, r.train_acc)).collect()),
                (
                    "#d62728",
                    rows.iter()
                        .filter_map(|r| r.test_acc.map(|a| (r.epoch as f64, a)))
                        .collect(),
                ),
            ]
        };
        for (color, pts) in series {
            let path: Vec<String> = pts.iter().map(|&(e, v)| format!("{:.1},{:.1}", px(e), py(v))).collect();
            if !path.is_empty() {
                writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                    path.join(" ")
                )
                .unwrap();
            }
        }
    }
    let lx = 2.0 * pad + panel_w + 10.0;
    writeln!(
        s,
        r##"<text x="{lx}" y="55" fill="#1f77b4">train</text><text x="{}" y="55" fill="#d62728">test</text>"##,
        lx + 45.0
    )
    .unwrap();
    writeln!(s, "</svg>").unwrap();
    std::fs::write(path, s)
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Resident set size of this process in MiB (Linux; `None` elsewhere).
pub fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Peak resident set size in MiB (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
