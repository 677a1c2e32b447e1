//! Outputs of a run: metrics.csv, one SVG of the runs' curves, resident memory.

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

/// One run in a plot: its label, colour and epochs.
pub struct Series<'a> {
    pub label: String,
    pub color: &'static str,
    pub rows: &'a [EpochMetrics],
}

/// The colours of the runs, in order.
pub const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// One SVG of one or more runs on the same axes: test top-1 accuracy per evaluated epoch (left)
/// and training loss per epoch (right), a legend, the title, and `notes` (the final table)
/// below. Plain SVG, no dependencies.
pub fn write_comparison_svg(path: &Path, title: &str, runs: &[Series], notes: &[String]) -> std::io::Result<()> {
    let (w, pad, top, ph) = (960.0, 60.0, 70.0, 300.0);
    let panel_w = (w - 3.0 * pad) / 2.0;
    let h = top + ph + 60.0 + 18.0 * notes.len() as f64 + 10.0;
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line(format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    ));
    line(r#"<rect width="100%" height="100%" fill="white"/>"#.into());
    line(format!(
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        xml(title)
    ));
    // legend
    let mut lx = pad;
    for r in runs {
        line(format!(
            r#"<rect x="{lx}" y="36" width="18" height="4" fill="{}"/><text x="{}" y="42">{}</text>"#,
            r.color,
            lx + 24.0,
            xml(&r.label)
        ));
        lx += 34.0 + 7.0 * r.label.len() as f64;
    }
    let max_epoch = runs
        .iter()
        .flat_map(|r| r.rows.last().map(|e| e.epoch))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let loss_max = runs
        .iter()
        .flat_map(|r| r.rows.iter().map(|e| e.train_loss))
        .filter(|v| v.is_finite())
        .fold(1e-9, f64::max);
    // Round the axis up so that its five gridlines fall on round values (0.5, 1.0, ...).
    let loss_max = {
        let raw_step = loss_max / 5.0;
        let unit = 10f64.powf(raw_step.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * unit)
            .find(|&s| s >= raw_step)
            .unwrap_or(10.0 * unit);
        5.0 * step
    };
    struct Panel {
        x0: f64,
        label: &'static str,
        ymax: f64,
        percent: bool,
    }
    let panels = [
        Panel {
            x0: pad,
            label: "test top-1 accuracy (%)",
            ymax: 1.0,
            percent: true,
        },
        Panel {
            x0: 2.0 * pad + panel_w,
            label: "training loss",
            ymax: loss_max,
            percent: false,
        },
    ];
    for p in &panels {
        let x0 = p.x0;
        line(format!(
            r##"<rect x="{x0}" y="{top}" width="{panel_w}" height="{ph}" fill="none" stroke="#888"/>"##
        ));
        line(format!(
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x0 + panel_w / 2.0,
            top - 6.0,
            p.label
        ));
        for k in 0..=5 {
            let v = p.ymax * k as f64 / 5.0;
            let y = top + ph - ph * k as f64 / 5.0;
            let text = if p.percent {
                format!("{:.0}", 100.0 * v)
            } else {
                format!("{v:.2}")
            };
            line(format!(
                r##"<line x1="{x0}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end" font-size="10">{text}</text>"##,
                x0 + panel_w,
                x0 - 4.0,
                y + 3.0
            ));
        }
        for k in 0..=4 {
            let e = max_epoch * k as f64 / 4.0;
            line(format!(
                r#"<text x="{}" y="{}" text-anchor="middle" font-size="10">{e:.0}</text>"#,
                x0 + panel_w * k as f64 / 4.0,
                top + ph + 14.0
            ));
        }
        line(format!(
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="11">epoch</text>"#,
            x0 + panel_w / 2.0,
            top + ph + 30.0
        ));
        let px = |e: f64| x0 + panel_w * e / max_epoch;
        let py = |v: f64| top + ph - ph * (v / p.ymax).clamp(0.0, 1.0);
        for r in runs {
            let pts: Vec<(f64, f64)> = if p.percent {
                r.rows
                    .iter()
                    .filter_map(|e| e.test_acc.map(|a| (e.epoch as f64, a)))
                    .collect()
            } else {
                r.rows.iter().map(|e| (e.epoch as f64, e.train_loss)).collect()
            };
            let coords: Vec<String> = pts.iter().map(|&(e, v)| format!("{:.1},{:.1}", px(e), py(v))).collect();
            if !coords.is_empty() {
                line(format!(
                    r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
                    r.color,
                    coords.join(" ")
                ));
            }
            if p.percent {
                for &(e, v) in &pts {
                    line(format!(
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                        px(e),
                        py(v),
                        r.color
                    ));
                }
            }
        }
    }
    for (i, n) in notes.iter().enumerate() {
        line(format!(
            r#"<text x="{pad}" y="{}">{}</text>"#,
            top + ph + 56.0 + 18.0 * i as f64,
            xml(n)
        ));
    }
    line("</svg>".into());
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
