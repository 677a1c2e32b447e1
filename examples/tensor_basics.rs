//! Tensor basics: making tensors, looking at them, changing their shape, arithmetic with
//! broadcasting, reductions, matrix products, errors as values, and f32 vs f64.
//!
//! Run with `cargo run --release --example tensor_basics`.
//!
//! Nothing here uses autograd yet (that is the next example, `first_steps`): this is the
//! vocabulary every later example is written in. Each section prints a tensor and one or two
//! lines saying what to notice. Names and semantics follow PyTorch's functional API, so
//! `x.sum_dim(&[1], false)` is `x.sum(dim=1)`, `x.permute(&[2, 0, 1])` is `x.permute(2, 0, 1)`.

use smallgrad::{Device, Result, Tensor};

/// Prints a section title.
fn section(title: &str) {
    println!("\n=== {title} ===");
}

fn main() -> Result<()> {
    let cpu = Device::Cpu;

    section("1. Creation");
    // A tensor is a flat Vec of numbers plus a shape, stored row-major (the last index moves
    // fastest). `from_vec` checks that the shape's product equals the data length.
    let a: Tensor = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], cpu)?;
    println!("from_vec, shape [2, 3]:\n{a}");
    // `Tensor` alone means `Tensor<f32>`; the type default does not apply to calls, so say
    // which element type you want on the variable (or write `Tensor::<f32>::zeros`).
    let z: Tensor = Tensor::zeros(&[2, 2], cpu)?;
    println!("zeros:\n{z}");
    // Random tensors take a seed: the same seed gives the same values on every machine and
    // with any number of threads (the generator is xoshiro256**, see `smallgrad::Rng`).
    let r1: Tensor = Tensor::randn(&[2, 3], 42, cpu)?;
    let r2: Tensor = Tensor::randn(&[2, 3], 42, cpu)?;
    println!("randn(seed 42), N(0, 1):\n{r1}");
    println!("same seed, same values: {}", r1.to_vec()? == r2.to_vec()?);
    // one_hot turns class indices into rows with a single 1: the target of the cosine loss.
    let oh: Tensor = Tensor::one_hot(&[2, 0, 1], 4, cpu)?;
    println!("one_hot([2, 0, 1], 4 classes):\n{oh}");

    section("2. Shapes and inspection");
    println!(
        "a.shape() = {:?}, ndim = {}, numel = {}, dtype = {}, device = {}",
        a.shape(),
        a.ndim(),
        a.numel(),
        a.dtype(),
        a.device()
    );
    // to_vec copies the values out (row-major); item reads a one-element tensor.
    println!("a.to_vec() = {:?}", a.to_vec()?);
    let s: Tensor = Tensor::from_vec(vec![3.5], &[], cpu)?; // shape [] is a scalar
    println!("a scalar (shape []): {s}, item() = {}", s.item()?);

    section("3. Reshape, transpose, permute");
    // reshape keeps the row-major order of the values and only changes how they are grouped.
    println!("a.reshape([3, 2]):\n{}", a.reshape(&[3, 2])?);
    // transpose swaps two dims: element [i, j] moves to [j, i].
    println!("a.transpose(0, 1):\n{}", a.transpose(0, 1)?);
    // permute reorders all dims at once, e.g. NCHW -> NHWC. Here [2, 3, 4] -> [4, 2, 3].
    let t: Tensor = Tensor::from_vec((0..24).map(|v| v as f32).collect(), &[2, 3, 4], cpu)?;
    let p = t.permute(&[2, 0, 1])?;
    println!(
        "t has shape {:?}; t.permute([2, 0, 1]) has shape {:?}",
        t.shape(),
        p.shape()
    );
    // Row-major offsets: t[i, j, k] is at i*12 + j*4 + k; p[k, i, j] is at k*6 + i*3 + j.
    let (tv, pv) = (t.to_vec()?, p.to_vec()?);
    println!(
        "t[1, 2, 3] = {} and p[3, 1, 2] = {}: the same element",
        tv[12 + 2 * 4 + 3],
        pv[3 * 6 + 3 + 2]
    );
    // flatten(start_dim) merges every dim from start_dim on: how a CNN hands its features to
    // a Linear layer.
    println!("t.flatten(1) has shape {:?}", t.flatten(1)?.shape());

    section("4. Arithmetic and broadcasting");
    // Elementwise ops need equal shapes... or shapes that broadcast, as in NumPy: align the
    // shapes on the right; a dim of size 1 (or a missing dim) is repeated to match.
    let row: Tensor = Tensor::from_vec(vec![10.0, 20.0, 30.0], &[3], cpu)?; // [3] acts as [1, 3]
    let col: Tensor = Tensor::from_vec(vec![100.0, 200.0], &[2, 1], cpu)?; // [2, 1]
    println!(
        "a + row   ([2, 3] + [3]: the row is added to every row of a):\n{}",
        a.add(&row)?
    );
    println!(
        "a * col   ([2, 3] * [2, 1]: row i is scaled by col[i]):\n{}",
        a.mul(&col)?
    );
    println!("row + col ([3] + [2, 1] -> [2, 3], an outer sum):\n{}", row.add(&col)?);
    // Scalars have their own methods, and the usual unary functions are there too.
    println!(
        "a.mul_scalar(0.5).add_scalar(1):\n{}",
        a.mul_scalar(0.5)?.add_scalar(1.0)?
    );
    println!(
        "a.add_scalar(-3).relu() (negative parts become 0):\n{}",
        a.add_scalar(-3.0)?.relu()?
    );
    println!("a.exp():\n{}", a.exp()?);

    section("5. Reductions");
    // sum / mean over everything give a scalar tensor; sum_dim / mean_dim reduce some dims.
    println!("a.sum() = {}, a.mean() = {}", a.sum()?.item()?, a.mean()?.item()?);
    println!("a.sum_dim([0]) (down the columns): {}", a.sum_dim(&[0], false)?);
    println!("a.mean_dim([1]) (along each row):  {}", a.mean_dim(&[1], false)?);
    // keepdim = true leaves a dim of size 1, so the result broadcasts back against a:
    // here every row is centred on its own mean.
    let centred = a.sub(&a.mean_dim(&[1], true)?)?;
    println!("a - a.mean_dim([1], keepdim) (rows centred):\n{centred}");
    // max_dim gives the values; argmax gives the positions (a classifier's prediction).
    println!(
        "a.max_dim(1) = {}, a.argmax(1) = {:?}",
        a.max_dim(1, false)?,
        a.argmax(1)?
    );
    // softmax turns each row into probabilities (positive, summing to 1).
    let probs = a.softmax(1)?;
    println!("a.softmax(1):\n{probs}");
    println!("row sums of the softmax: {}", probs.sum_dim(&[1], false)?);

    section("6. Matrix products");
    // matmul is the matrix product: [m, k] x [k, n] -> [m, n]; each output element is the dot
    // product of a row of the left with a column of the right.
    let w: Tensor = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2], cpu)?;
    println!("a [2, 3] x w [3, 2] -> [2, 2]:\n{}", a.matmul(&w)?);
    // A batch of matrices times one matrix: [b, m, k] x [k, n] -> [b, m, n] (the right side is
    // broadcast over the batch). Linear layers compute x.matmul(W^T) + b this way.
    let batch: Tensor = Tensor::randn(&[4, 2, 3], 7, cpu)?;
    println!("[4, 2, 3] x [3, 2] -> {:?}", batch.matmul(&w)?.shape());

    section("7. Errors are values, not panics");
    // Every op returns a Result. A mistake in shapes is an Err that names the op, what it was
    // given and what it expected; the program decides what to do (here: print it).
    match a.matmul(&a) {
        Ok(_) => println!("unexpected: [2, 3] x [2, 3] worked"),
        Err(e) => println!("a.matmul(&a) -> Err: {e}"),
    }
    match a.add(&Tensor::<f32>::zeros(&[4], cpu)?) {
        Ok(_) => println!("unexpected: [2, 3] + [4] worked"),
        Err(e) => println!("a + zeros([4]) -> Err: {e}"),
    }
    match Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0], &[2, 2], cpu) {
        Ok(_) => println!("unexpected: 3 values in a [2, 2] tensor"),
        Err(e) => println!("from_vec(3 values, [2, 2]) -> Err: {e}"),
    }
    // In real code you would usually just write `?` and let the error travel up to main.
    // Note what is NOT an error: IEEE results such as log(-1) = NaN, exactly as in PyTorch.
    let neg: Tensor = Tensor::from_vec(vec![-1.0], &[1], cpu)?;
    println!("log(-1) = {} (a value, not an Err)", neg.log()?);

    section("8. f32 vs f64");
    // Tensor<f32> is for training (fast, half the memory); Tensor<f64> is for checking
    // gradients with finite differences, where f32's ~7 significant digits are not enough.
    let x32: Tensor<f32> = Tensor::from_vec(vec![1.0, 1e-8], &[2], cpu)?;
    let x64: Tensor<f64> = Tensor::from_vec(vec![1.0, 1e-8], &[2], cpu)?;
    println!("1 + 1e-8 in f32: {:.10}", x32.sum()?.item()?);
    println!("1 + 1e-8 in f64: {:.10}", x64.sum()?.item()?);
    // A finite difference (f(x + h) - f(x)) / h with a small h shows the difference clearly.
    let h = 1e-4;
    let d32 = ((1.0f32 + h as f32).exp() - 1.0f32.exp()) / h as f32;
    let d64 = ((1.0f64 + h).exp() - 1.0f64.exp()) / h;
    println!(
        "d/dx exp(x) at 1 by a difference with h = 1e-4: f32 {d32:.7}, f64 {d64:.7}, exact {:.7}",
        1.0f64.exp()
    );
    // Both miss by about h/2 * e = 1.4e-4 (the truncation error of the formula), but f32 also
    // loses about 1e-7 / h = 1e-3 to rounding: its digits run out before h is small.
    println!("(that is why `gradcheck` works in f64; see the custom_gradcheck example)");
    Ok(())
}
