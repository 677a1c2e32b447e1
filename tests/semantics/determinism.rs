//! Determinism: a small conv + batch_norm + relu + max_pool + matmul + cross_entropy forward and
//! backward in f32, with sizes above the parallel thresholds, gives bit-identical outputs,
//! gradients and running statistics in a 1-thread and in multi-thread rayon pools; so do a
//! large matmul (the parallel GEMM on its 6 x 4-vector tile: one row stripe per thread through
//! every k block on 2 and 3 threads, row blocks sized by the thread count for the weight
//! gradient's 260-row product), the fused batch_norm_relu with a residual, and 32 -> 64-channel
//! convs (the Winograd and channels-last kernels), stride 1 and 2.

use smallgrad::loss::{Reduction, cross_entropy};
use smallgrad::{Device, Tensor};

struct Run {
    loss: Vec<u32>,
    logits: Vec<u32>,
    grads: Vec<Vec<u32>>,
    running: Vec<Vec<u32>>,
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.to_vec().unwrap().into_iter().map(f32::to_bits).collect()
}

fn run() -> Run {
    let cpu = Device::Cpu;
    // 5*8*32*32 = 40960 input values, conv output 81920: above PAR_THRESHOLD (32768).
    let x = Tensor::<f32>::randn(&[5, 8, 32, 32], 1, cpu).unwrap().requires_grad();
    let w = Tensor::<f32>::randn(&[16, 8, 3, 3], 2, cpu)
        .unwrap()
        .mul_scalar(0.1)
        .unwrap()
        .requires_grad();
    let b = Tensor::<f32>::randn(&[16], 3, cpu).unwrap().requires_grad();
    let gamma = Tensor::<f32>::rand(&[16], 4, cpu)
        .unwrap()
        .add_scalar(0.5)
        .unwrap()
        .requires_grad();
    let beta = Tensor::<f32>::randn(&[16], 5, cpu).unwrap().requires_grad();
    let fc = Tensor::<f32>::randn(&[4096, 10], 6, cpu)
        .unwrap()
        .mul_scalar(0.02)
        .unwrap()
        .requires_grad();
    let rm = Tensor::<f32>::zeros(&[16], cpu).unwrap();
    let rv = Tensor::<f32>::ones(&[16], cpu).unwrap();
    let targets = [3, 1, 4, 1, 5];

    let h = x.conv2d(&w, Some(&b), 1, 1).unwrap();
    let h = h
        .batch_norm(Some(&rm), Some(&rv), Some(&gamma), Some(&beta), true, 0.1, 1e-5)
        .unwrap();
    let h = h.relu().unwrap().max_pool2d(2, 2, 0).unwrap().flatten(1).unwrap();
    let logits = h.matmul(&fc).unwrap();
    let loss = cross_entropy(&logits, &targets, Reduction::Mean).unwrap();
    loss.backward().unwrap();

    // A product large enough for the parallel 6 x 4 tile paths (m = 600 >= 2 row blocks of 96
    // per thread for 3 threads; k = 260: two k blocks), and the fused batch norm.
    let a = Tensor::<f32>::randn(&[600, 260], 7, cpu).unwrap().requires_grad();
    let bm = Tensor::<f32>::randn(&[260, 200], 8, cpu).unwrap().requires_grad();
    let prod = a.matmul(&bm).unwrap();
    let up = Tensor::<f32>::randn(&[600, 200], 9, cpu).unwrap();
    prod.mul(&up).unwrap().sum().unwrap().backward().unwrap();
    let z = Tensor::<f32>::randn(&[5, 16, 32, 32], 10, cpu).unwrap().requires_grad();
    let res = Tensor::<f32>::randn(&[5, 16, 32, 32], 11, cpu).unwrap().requires_grad();
    let (rm2, rv2) = (
        Tensor::<f32>::zeros(&[16], cpu).unwrap(),
        Tensor::<f32>::ones(&[16], cpu).unwrap(),
    );
    let fused = z
        .batch_norm_relu(
            Some(&rm2),
            Some(&rv2),
            Some(&gamma),
            Some(&beta),
            Some(&res),
            true,
            0.1,
            1e-5,
        )
        .unwrap();
    let up2 = Tensor::<f32>::randn(&[5, 16, 32, 32], 12, cpu).unwrap();
    fused.mul(&up2).unwrap().sum().unwrap().backward().unwrap();
    // 32 -> 64 channels: the stride-1 conv's forward and input gradient on Winograd, its weight
    // gradient and the stride-2 conv on the channels-last kernels (20 images at 7x7 and 4x4
    // outputs = chunks of 16 and 4).
    let xc = Tensor::<f32>::randn(&[20, 32, 7, 7], 13, cpu).unwrap().requires_grad();
    let wc = Tensor::<f32>::randn(&[64, 32, 3, 3], 14, cpu)
        .unwrap()
        .mul_scalar(0.1)
        .unwrap()
        .requires_grad();
    let ws = Tensor::<f32>::randn(&[64, 32, 3, 3], 15, cpu)
        .unwrap()
        .mul_scalar(0.1)
        .unwrap()
        .requires_grad();
    let yc = xc.conv2d(&wc, None, 1, 1).unwrap();
    let ys = xc.conv2d(&ws, None, 2, 1).unwrap();
    let up3 = Tensor::<f32>::randn(&[20, 64, 7, 7], 16, cpu).unwrap();
    let up4 = Tensor::<f32>::randn(&[20, 64, 4, 4], 17, cpu).unwrap();
    let lc = yc.mul(&up3).unwrap().sum().unwrap();
    let ls = ys.mul(&up4).unwrap().sum().unwrap();
    lc.add(&ls).unwrap().backward().unwrap();
    Run {
        loss: bits(&loss),
        logits: [bits(&logits), bits(&prod), bits(&fused), bits(&yc), bits(&ys)].concat(),
        grads: [&x, &w, &b, &gamma, &beta, &fc, &a, &bm, &z, &res, &xc, &wc, &ws]
            .iter()
            .map(|t| bits(&t.grad().unwrap()))
            .collect(),
        running: vec![bits(&rm), bits(&rv), bits(&rm2), bits(&rv2)],
    }
}

fn in_pool(threads: usize) -> Run {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(run)
}

fn same(a: &Run, b: &Run, what: &str) {
    assert_eq!(a.loss, b.loss, "{what}: loss bits differ");
    assert_eq!(a.logits, b.logits, "{what}: logits bits differ");
    for (i, (ga, gb)) in a.grads.iter().zip(&b.grads).enumerate() {
        let diff = ga.iter().zip(gb).filter(|(p, q)| p != q).count();
        assert_eq!(
            diff,
            0,
            "{what}: gradient {i} differs in {diff} of {} elements",
            ga.len()
        );
    }
    assert_eq!(a.running, b.running, "{what}: running statistics differ");
}

#[test]
fn bit_identical_across_thread_counts() {
    let one = in_pool(1);
    assert!(f32::from_bits(one.loss[0]).is_finite());
    same(&one, &in_pool(2), "1 vs 2 threads");
    same(&one, &in_pool(3), "1 vs 3 threads");
    same(&one, &in_pool(2), "1 vs 2 threads (again)");
}
