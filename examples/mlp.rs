//! A small multi-layer perceptron learns two interleaved spirals: layers, a training loop,
//! cross-entropy, SGD with momentum, accuracy, and a picture of what the network learned.
//!
//! Run with `cargo run --release --example mlp` (a few seconds).
//!
//! What it teaches:
//! - building a model from `smallgrad::nn::Linear` layers and `relu`, and collecting its
//!   parameters through the `smallgrad::nn::Module` trait;
//! - the training loop every later example repeats: forward, loss, `zero_grad`, `backward`,
//!   `step`;
//! - evaluating without recording a graph (`smallgrad::no_grad`) and measuring accuracy with
//!   `argmax`.
//!
//! The data (two spirals, one per class) cannot be separated by a straight line, so a linear
//! classifier stays near 50%; the hidden layer of the MLP bends the decision boundary.

use smallgrad::loss::{Reduction, cross_entropy};
use smallgrad::nn::{Linear, Module};
use smallgrad::optim::{Sgd, SgdConfig};
use smallgrad::{Device, Result, Rng, Tensor, no_grad};

/// Points per class.
const PER_CLASS: usize = 200;
/// Hidden units.
const HIDDEN: usize = 64;
/// Full-batch gradient steps.
const STEPS: usize = 1500;
/// Print progress every this many steps.
const EVERY: usize = 150;

/// Two interleaved spirals in the square [-1, 1]², with a little noise: class 0 winds one
/// way from the centre, class 1 is the same spiral rotated by half a turn. Returns the points
/// as a `[N, 2]` tensor and the N class labels.
fn spirals(per_class: usize, rng: &mut Rng) -> Result<(Tensor, Vec<usize>)> {
    let mut xy = Vec::with_capacity(2 * per_class * 2);
    let mut labels = Vec::with_capacity(2 * per_class);
    for class in 0..2 {
        for i in 0..per_class {
            // Radius grows from 0.05 to 1 while the angle sweeps 1.5 turns.
            let r = 0.05 + 0.95 * i as f64 / per_class as f64;
            let angle = 1.5 * std::f64::consts::TAU * r + std::f64::consts::PI * class as f64;
            let noise = 0.04;
            xy.push((r * angle.cos() + noise * rng.normal()) as f32);
            xy.push((r * angle.sin() + noise * rng.normal()) as f32);
            labels.push(class);
        }
    }
    Ok((Tensor::from_vec(xy, &[2 * per_class, 2], Device::Cpu)?, labels))
}

/// input 2 → Linear → ReLU → Linear → 2 scores (logits), one per class.
struct Mlp {
    hidden: Linear,
    out: Linear,
}

impl Mlp {
    fn new(rng: &mut Rng) -> Result<Mlp> {
        Ok(Mlp {
            hidden: Linear::new(2, HIDDEN, true, rng, Device::Cpu)?,
            out: Linear::new(HIDDEN, 2, true, rng, Device::Cpu)?,
        })
    }

    /// `x` is `[N, 2]`; the result is `[N, 2]` unnormalised class scores.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.hidden.forward(x)?.relu()?;
        self.out.forward(&h)
    }

    /// Every trainable tensor (weights and biases of both layers), for the optimiser.
    fn parameters(&self) -> Vec<Tensor> {
        let mut p = self.hidden.parameters();
        p.extend(self.out.parameters());
        p
    }
}

/// The fraction of rows of `logits` whose largest score is at the right label.
fn accuracy(logits: &Tensor, labels: &[usize]) -> Result<f64> {
    let pred = logits.argmax(1)?;
    let right = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(right as f64 / labels.len() as f64)
}

/// Draws the plane [-1.2, 1.2]² as characters: the background is the class the network
/// predicts there (blank for 0, `:` for 1) and the training points are drawn on top
/// (`o` for 0, `x` for 1).
fn ascii_picture(model: &Mlp, x: &Tensor, labels: &[usize]) -> Result<String> {
    let (cols, rows) = (64usize, 28usize);
    let span = 1.2f32;
    // The centre of every character cell, as one [rows * cols, 2] batch.
    let mut grid = Vec::with_capacity(rows * cols * 2);
    for r in 0..rows {
        for c in 0..cols {
            grid.push(-span + 2.0 * span * (c as f32 + 0.5) / cols as f32);
            grid.push(span - 2.0 * span * (r as f32 + 0.5) / rows as f32);
        }
    }
    let grid = Tensor::from_vec(grid, &[rows * cols, 2], Device::Cpu)?;
    let pred = no_grad(|| model.forward(&grid))?.argmax(1)?;
    let mut canvas: Vec<Vec<char>> = (0..rows)
        .map(|r| {
            (0..cols)
                .map(|c| if pred[r * cols + c] == 0 { ' ' } else { ':' })
                .collect()
        })
        .collect();
    let pts = x.to_vec()?;
    for (i, &l) in labels.iter().enumerate() {
        let (px, py) = (pts[2 * i], pts[2 * i + 1]);
        let c = ((px + span) / (2.0 * span) * cols as f32).floor();
        let r = ((span - py) / (2.0 * span) * rows as f32).floor();
        if (0.0..cols as f32).contains(&c) && (0.0..rows as f32).contains(&r) {
            canvas[r as usize][c as usize] = if l == 0 { 'o' } else { 'x' };
        }
    }
    Ok(canvas
        .into_iter()
        .map(|row| row.into_iter().collect::<String>() + "\n")
        .collect())
}

fn main() -> Result<()> {
    // One seeded generator drives the data and the initial weights: rerunning gives the same
    // numbers, bit for bit.
    let mut rng = Rng::new(0);
    let (x, labels) = spirals(PER_CLASS, &mut rng)?;
    let model = Mlp::new(&mut rng)?;
    println!(
        "two spirals: {} points, 2 classes; MLP 2 -> {HIDDEN} -> 2 ({} parameters)",
        labels.len(),
        model.parameters().iter().map(|p| p.numel()).sum::<usize>()
    );

    // SGD with momentum: v = 0.9 v + g; p = p - lr v (PyTorch's update).
    let mut opt = Sgd::new(
        model.parameters(),
        SgdConfig {
            lr: 0.2,
            momentum: 0.9,
            ..Default::default()
        },
    )?;

    let start = std::time::Instant::now();
    for step in 0..=STEPS {
        // Forward: the whole data set is one batch here (it is tiny).
        let logits = model.forward(&x)?;
        let loss = cross_entropy(&logits, &labels, Reduction::Mean)?;
        if step % EVERY == 0 {
            println!(
                "step {step:>5}  loss {:.4}  accuracy {:5.1}%",
                loss.item()?,
                100.0 * accuracy(&logits, &labels)?
            );
        }
        if step == STEPS {
            break;
        }
        // Backward and update. Gradients accumulate into `.grad()`, so clear them first.
        opt.zero_grad();
        loss.backward()?;
        opt.step()?;
    }
    println!("trained in {:.2} s", start.elapsed().as_secs_f64());

    // Evaluate on fresh points from the same spirals, without building a graph.
    let (x_test, y_test) = spirals(PER_CLASS, &mut rng)?;
    let test_acc = accuracy(&no_grad(|| model.forward(&x_test))?, &y_test)?;
    println!(
        "accuracy on {} fresh points: {:.1}% (chance: 50%)",
        y_test.len(),
        100.0 * test_acc
    );

    println!("\nwhat the network predicts over the plane (blank: class 0, ':': class 1; o/x: training points):");
    print!("{}", ascii_picture(&model, &x, &labels)?);
    Ok(())
}
