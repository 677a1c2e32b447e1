//! Forward references with plain f64 loops, independent of the crate's ops:
//! cross_entropy and CosineLoss (all reductions, random inputs), and normalize /
//! cosine_similarity at and below their eps (value, and gradient rules as PyTorch's:
//! F.normalize clamps inside autograd, F.cosine_similarity clamps the norms outside it).

use crate::common::*;
use proptest::prelude::*;
use smallgrad::loss::{CosineLoss, Reduction, cross_entropy};
use smallgrad::{Device, Rng, Tensor};

const CASES: u32 = 256;

fn rows(x: &[f64], c: usize) -> Vec<&[f64]> {
    x.chunks(c).collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// -log softmax(v)[t] = logsumexp(v) - v[t], computed stably.
fn ce_row(v: &[f64], t: usize) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + v.iter().map(|a| (a - m).exp()).sum::<f64>().ln();
    lse - v[t]
}

fn reduce(per: Vec<f64>, r: Reduction) -> Vec<f64> {
    match r {
        Reduction::Mean => vec![per.iter().sum::<f64>() / per.len() as f64],
        Reduction::Sum => vec![per.iter().sum::<f64>()],
        Reduction::None => per,
    }
}

fn reduction() -> impl Strategy<Value = Reduction> {
    prop::sample::select(vec![Reduction::Mean, Reduction::Sum, Reduction::None])
}

fn close(what: &str, got: &[f64], want: &[f64]) -> Result<(), TestCaseError> {
    assert_close(what, got, want, 1e-12, 1e-10).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn cross_entropy_matches_formula(n in 1usize..=6, c in 1usize..=8, r in reduction(), scale in 0.1f64..30.0, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let x = normal(&[n, c], &mut rng).mul_scalar(scale).unwrap();
        let t = targets(n, c, &mut rng);
        let xv = x.to_vec().unwrap();
        let per: Vec<f64> = rows(&xv, c).iter().zip(&t).map(|(v, &ti)| ce_row(v, ti)).collect();
        let want = reduce(per, r);
        let got = cross_entropy(&x, &t, r).unwrap();
        prop_assert_eq!(got.shape(), if r == Reduction::None { &[n][..] } else { &[][..] });
        close("cross_entropy", &got.to_vec().unwrap(), &want)?;
    }

    #[test]
    fn cosine_loss_matches_formula(
        n in 1usize..=6,
        c in 1usize..=8,
        r in reduction(),
        xent in prop::sample::select(vec![0.1, 0.0, 1.0, 3.0]),
        seed in any::<u64>(),
    ) {
        let mut rng = Rng::new(seed);
        let x = normal(&[n, c], &mut rng).mul_scalar(3.0).unwrap();
        let t = targets(n, c, &mut rng);
        let xv = x.to_vec().unwrap();
        // The seed module, term by term: 1 - cos(x, e_t) with norms clamped at 1e-8 (||e_t|| = 1),
        // plus xent * CE(x / max(||x||, 1e-12)), each reduced with r.
        let cos_terms: Vec<f64> = rows(&xv, c).iter().zip(&t).map(|(v, &ti)| 1.0 - v[ti] / norm(v).max(1e-8)).collect();
        let ce_terms: Vec<f64> = rows(&xv, c)
            .iter()
            .zip(&t)
            .map(|(v, &ti)| {
                let d = norm(v).max(1e-12);
                let xn: Vec<f64> = v.iter().map(|a| a / d).collect();
                ce_row(&xn, ti)
            })
            .collect();
        let want: Vec<f64> = reduce(cos_terms, r).iter().zip(reduce(ce_terms, r)).map(|(a, b)| a + xent * b).collect();
        let got = CosineLoss { xent, reduction: r }.forward(&x, &t).unwrap();
        close("CosineLoss", &got.to_vec().unwrap(), &want)?;
    }

    /// normalize with some rows below eps: y = x / max(||x||, eps); the gradient is g / eps
    /// below eps (the clamp is inside autograd: no gradient through the norm there) and the
    /// usual (g - y (y.g)) / ||x|| above.
    #[test]
    fn normalize_below_eps(n in 1usize..=5, c in 1usize..=6, eps in prop::sample::select(vec![1e-12, 0.5, 1.0]), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        // Row scales: zero, tiny, below eps and above eps.
        let mut data = Vec::new();
        for _ in 0..n {
            let s = [0.0, 1e-14, 0.3 * eps, 3.0 * eps + 0.5][rng.below(4)];
            let v: Vec<f64> = (0..c).map(|_| rng.normal()).collect();
            let nv = norm(&v).max(1e-300);
            data.extend(v.iter().map(|a| a / nv * s));
        }
        let x = Tensor::from_vec(data.clone(), &[n, c], Device::Cpu).unwrap().requires_grad();
        let g = normal(&[n, c], &mut rng);
        let y = x.normalize(1, eps).unwrap();
        y.backward_with(&g).unwrap();
        let gv = g.to_vec().unwrap();
        let (mut want_y, mut want_g) = (Vec::new(), Vec::new());
        for (v, gr) in rows(&data, c).iter().zip(rows(&gv, c)) {
            let nv = norm(v);
            let d = nv.max(eps);
            let yr: Vec<f64> = v.iter().map(|a| a / d).collect();
            if nv > eps {
                let yg: f64 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                want_g.extend(gr.iter().zip(&yr).map(|(gi, yi)| (gi - yi * yg) / nv));
            } else {
                want_g.extend(gr.iter().map(|gi| gi / eps));
            }
            want_y.extend(yr);
        }
        close("normalize value", &y.to_vec().unwrap(), &want_y)?;
        assert_close("normalize grad", &x.grad().unwrap().to_vec().unwrap(), &want_g, 1e-9, 1e-9).map_err(TestCaseError::fail)?;
    }

    /// cosine_similarity with norms below eps (and zero vectors): value sum(a b) / (ca cb) with
    /// c = max(||.||, eps); gradient as current PyTorch, whose clamp runs under no_grad on a
    /// copy of the norm, so autograd differentiates through the unclamped norm:
    /// d/da = b / (ca cb) - (a.b) / (ca^2 cb) * a / ||a||   (last factor 0 when ||a|| = 0).
    #[test]
    fn cosine_similarity_below_eps(n in 1usize..=5, c in 1usize..=6, eps in prop::sample::select(vec![1e-8, 0.5, 1.0]), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let draw = |rng: &mut Rng| {
            let mut data = Vec::new();
            for _ in 0..n {
                let s = [0.0, 1e-12, 0.3 * eps, 3.0 * eps + 0.5][rng.below(4)];
                let v: Vec<f64> = (0..c).map(|_| rng.normal()).collect();
                let nv = norm(&v).max(1e-300);
                data.extend(v.iter().map(|a| a / nv * s));
            }
            data
        };
        let (ad, bd) = (draw(&mut rng), draw(&mut rng));
        let a = Tensor::from_vec(ad.clone(), &[n, c], Device::Cpu).unwrap().requires_grad();
        let b = Tensor::from_vec(bd.clone(), &[n, c], Device::Cpu).unwrap().requires_grad();
        let g: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let y = a.cosine_similarity(&b, 1, eps).unwrap();
        prop_assert_eq!(y.shape(), &[n]);
        y.backward_with(&Tensor::from_vec(g.clone(), &[n], Device::Cpu).unwrap()).unwrap();
        let (mut want_y, mut want_ga, mut want_gb) = (Vec::new(), Vec::new(), Vec::new());
        for ((u, v), gi) in rows(&ad, c).iter().zip(rows(&bd, c)).zip(&g) {
            let (nu, nv) = (norm(u), norm(v));
            let (cu, cv) = (nu.max(eps), nv.max(eps));
            let dot: f64 = u.iter().zip(v).map(|(p, q)| p * q).sum();
            want_y.push(dot / (cu * cv));
            let unit = |w: &[f64], nw: f64| -> Vec<f64> { w.iter().map(|p| if nw > 0.0 { p / nw } else { 0.0 }).collect() };
            let (uu, uv) = (unit(u, nu), unit(v, nv));
            want_ga.extend(v.iter().zip(&uu).map(|(q, e)| gi * (q / (cu * cv) - dot / (cu * cu * cv) * e)));
            want_gb.extend(u.iter().zip(&uv).map(|(p, e)| gi * (p / (cu * cv) - dot / (cu * cv * cv) * e)));
        }
        close("cosine value", &y.to_vec().unwrap(), &want_y)?;
        assert_close("cosine grad a", &a.grad().unwrap().to_vec().unwrap(), &want_ga, 1e-9, 1e-9).map_err(TestCaseError::fail)?;
        assert_close("cosine grad b", &b.grad().unwrap().to_vec().unwrap(), &want_gb, 1e-9, 1e-9).map_err(TestCaseError::fail)?;
    }
}

/// Named cases: all-zero logits rows, a zero row in CosineLoss (cosine term 1 - 0 = 1, the
/// normalised logits are 0 so the CE term is ln C).
#[test]
fn cosine_loss_zero_row() {
    let x = Tensor::<f64>::zeros(&[1, 4], Device::Cpu).unwrap();
    let l = CosineLoss::default().forward(&x, &[2]).unwrap().item().unwrap();
    let want = 1.0 + 0.1 * 4f64.ln();
    assert!((l - want).abs() < 1e-12, "got {l}, want {want}");
}

#[test]
fn cross_entropy_extreme_logits_finite() {
    let x = Tensor::<f64>::from_vec(vec![1000.0, -1000.0, 0.0, 0.0], &[2, 2], Device::Cpu).unwrap();
    let l = cross_entropy(&x, &[1, 0], Reduction::None).unwrap().to_vec().unwrap();
    assert!(
        (l[0] - 2000.0).abs() < 1e-9 && (l[1] - 2f64.ln()).abs() < 1e-12,
        "{l:?}"
    );
}
