//! Tests of `smallgrad::optim`: SGD updates against hand formulas and PyTorch golden values
//! (tests/fixtures/optim_*.txt, written by scripts/gen_optim_fixtures.py), schedules,
//! gradient clipping, state save/restore, and the in-place version check.

use smallgrad::optim::{
    CosineAnnealing, LrSchedule, Sgd, SgdConfig, SgdState, StepDecay, WarmRestarts, clip_grad_norm,
};
use smallgrad::{Device, Error, Float, Tensor};

const CPU: Device = Device::Cpu;

fn t<T: Float>(v: &[f64], shape: &[usize]) -> Tensor<T> {
    Tensor::from_vec(v.iter().map(|&x| T::from_f64(x)).collect(), shape, CPU).unwrap()
}

/// Gives each listed parameter exactly the gradient `g` (via L = sum_i sum(p_i * g_i)), after
/// clearing all gradients. Parameters not listed end with no gradient.
fn set_grads<T: Float>(opt: &Sgd<T>, grads: &[(usize, Tensor<T>)]) {
    opt.zero_grad();
    let mut loss: Option<Tensor<T>> = None;
    for (i, g) in grads {
        let term = opt.params()[*i].mul(g).unwrap().sum().unwrap();
        loss = Some(match loss {
            None => term,
            Some(l) => l.add(&term).unwrap(),
        });
    }
    if let Some(l) = loss {
        l.backward().unwrap();
    }
}

fn vals<T: Float>(x: &Tensor<T>) -> Vec<f64> {
    x.to_vec().unwrap().into_iter().map(|v| v.to_f64()).collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}[{k}]: got {g}, want {w}");
    }
}

// ------------------------------------------------------------------ independent reference

/// PyTorch's SGD on one scalar parameter, in plain f64: returns the parameter after each step.
/// `grads[s] = None` means no gradient at step s.
fn reference(p0: f64, grads: &[Option<f64>], c: &SgdConfig) -> Vec<f64> {
    let (mut p, mut buf): (f64, Option<f64>) = (p0, None);
    let mut out = vec![];
    for g in grads {
        if let Some(g) = *g {
            let mut d = g;
            if c.weight_decay != 0.0 {
                d += c.weight_decay * p;
            }
            if c.momentum != 0.0 {
                let b = match buf {
                    None => d,
                    Some(b) => c.momentum * b + (1.0 - c.dampening) * d,
                };
                buf = Some(b);
                d = if c.nesterov { d + c.momentum * b } else { b };
            }
            p -= c.lr * d;
        }
        out.push(p);
    }
    out
}

fn run_scalar_steps(p0: &[f64], grads: &[Vec<Option<f64>>], c: SgdConfig) -> Vec<Vec<f64>> {
    // One parameter per element, so that missing gradients can differ per element.
    let params: Vec<Tensor<f64>> = p0.iter().map(|&v| t::<f64>(&[v], &[1]).requires_grad()).collect();
    let mut opt = Sgd::new(params.clone(), c).unwrap();
    let mut out = vec![];
    for step in grads {
        let gs: Vec<(usize, Tensor<f64>)> = step
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.map(|g| (i, t(&[g], &[1]))))
            .collect();
        set_grads(&opt, &gs);
        opt.step().unwrap();
        out.push(params.iter().map(|p| p.item().unwrap()).collect());
    }
    out
}

#[test]
fn hand_values_plain_and_momentum() {
    // Plain SGD, lr 0.1: p = 1 - 0.1 * 0.5 = 0.95, then 0.95 - 0.1 * (-1) = 1.05.
    let c = SgdConfig {
        lr: 0.1,
        ..Default::default()
    };
    let got = run_scalar_steps(&[1.0], &[vec![Some(0.5)], vec![Some(-1.0)]], c);
    assert_close(&[got[0][0], got[1][0]], &[0.95, 1.05], 1e-15, "plain");

    // Momentum 0.9, lr 0.1, gradient 1 three times: buf = 1, 1.9, 2.71;
    // p = 1 - 0.1 - 0.19 - 0.271 = 0.439.
    let c = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        ..Default::default()
    };
    let got = run_scalar_steps(&[1.0], &vec![vec![Some(1.0)]; 3], c);
    assert_close(
        &[got[0][0], got[1][0], got[2][0]],
        &[0.9, 0.71, 0.439],
        1e-14,
        "momentum",
    );

    // Nesterov, momentum 0.5, lr 1, gradient 2 twice: buf = 2, d = 2 + 0.5*2 = 3, p = -3;
    // buf = 0.5*2 + 2 = 3, d = 2 + 1.5 = 3.5, p = -6.5.
    let c = SgdConfig {
        lr: 1.0,
        momentum: 0.5,
        nesterov: true,
        ..Default::default()
    };
    let got = run_scalar_steps(&[0.0], &vec![vec![Some(2.0)]; 2], c);
    assert_close(&[got[0][0], got[1][0]], &[-3.0, -6.5], 1e-15, "nesterov");

    // Dampening 0.5, momentum 0.5, lr 1, gradient 2 twice: buf = 2 (no dampening on the
    // first step), p = -2; buf = 0.5*2 + 0.5*2 = 2, p = -4.
    let c = SgdConfig {
        lr: 1.0,
        momentum: 0.5,
        dampening: 0.5,
        ..Default::default()
    };
    let got = run_scalar_steps(&[0.0], &vec![vec![Some(2.0)]; 2], c);
    assert_close(&[got[0][0], got[1][0]], &[-2.0, -4.0], 1e-15, "dampening");

    // Weight decay 0.5, lr 0.1, gradient 0 at p = 2: d = 1, p = 1.9; d = 0.95, p = 1.805.
    let c = SgdConfig {
        lr: 0.1,
        weight_decay: 0.5,
        ..Default::default()
    };
    let got = run_scalar_steps(&[2.0], &vec![vec![Some(0.0)]; 2], c);
    assert_close(&[got[0][0], got[1][0]], &[1.9, 1.805], 1e-15, "weight decay");
}

#[test]
fn all_options_against_reference_with_skips() {
    let configs = [
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.3,
            weight_decay: 0.01,
            nesterov: false,
        },
        SgdConfig {
            lr: 0.2,
            momentum: 0.7,
            dampening: 0.0,
            weight_decay: 0.1,
            nesterov: true,
        },
        SgdConfig {
            lr: 0.3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.2,
            nesterov: false,
        },
    ];
    let p0 = [0.3, -1.2, 2.5];
    let grads = vec![
        vec![Some(0.1), None, Some(-0.7)],
        vec![Some(-0.4), Some(0.9), None],
        vec![None, Some(0.2), Some(1.5)],
    ];
    for c in configs {
        let got = run_scalar_steps(&p0, &grads, c);
        for (e, &p) in p0.iter().enumerate() {
            let gs: Vec<Option<f64>> = grads.iter().map(|s| s[e]).collect();
            let want = reference(p, &gs, &c);
            let got_e: Vec<f64> = got.iter().map(|s| s[e]).collect();
            assert_close(&got_e, &want, 1e-15, &format!("{c:?} element {e}"));
        }
    }
}

#[test]
fn large_parameter_takes_parallel_path_same_as_reference() {
    let n = 70_001;
    let p0: Vec<f64> = (0..n).map(|i| ((i * 37 % 101) as f64 - 50.0) / 25.0).collect();
    let g: Vec<f64> = (0..n).map(|i| ((i * 53 % 97) as f64 - 48.0) / 30.0).collect();
    let c = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.1,
        weight_decay: 0.01,
        nesterov: false,
    };
    let w = t::<f64>(&p0, &[n]).requires_grad();
    let mut opt = Sgd::new(vec![w.clone()], c).unwrap();
    for _ in 0..2 {
        set_grads(&opt, &[(0, t(&g, &[n]))]);
        opt.step().unwrap();
    }
    let got = vals(&w);
    for i in (0..n).step_by(997).chain([n - 1]) {
        let want = reference(p0[i], &[Some(g[i]), Some(g[i])], &c)[1];
        assert_eq!(got[i], want, "element {i}");
    }
}

// ------------------------------------------------------------------ PyTorch golden values

struct SgdCase {
    name: String,
    config: SgdConfig,
    steps: usize,
    params: Vec<(Vec<usize>, Vec<f64>)>,
    grads: Vec<(usize, usize, Vec<f64>)>,
    after: Vec<(usize, usize, Vec<f64>)>,
}

fn floats(tok: &[&str]) -> Vec<f64> {
    tok.iter()
        .map(|s| s.parse::<f64>().unwrap_or_else(|e| panic!("bad float {s}: {e}")))
        .collect()
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(text.starts_with("torch "), "{path}: missing the torch version line");
    text
}

fn parse_sgd() -> Vec<SgdCase> {
    let mut cases: Vec<SgdCase> = vec![];
    for line in fixture("optim_sgd.txt").lines().skip(1) {
        let tok: Vec<&str> = line.split_whitespace().collect();
        let us = |s: &str| s.parse::<usize>().unwrap();
        match tok[0] {
            "case" => {
                let f = floats(&tok[2..6]);
                cases.push(SgdCase {
                    name: tok[1].to_string(),
                    config: SgdConfig {
                        lr: f[0],
                        momentum: f[1],
                        dampening: f[2],
                        weight_decay: f[3],
                        nesterov: tok[6] == "1",
                    },
                    steps: us(tok[7]),
                    params: vec![],
                    grads: vec![],
                    after: vec![],
                });
            }
            "param" => {
                let shape = tok[2].split('x').map(us).collect();
                cases.last_mut().unwrap().params.push((shape, floats(&tok[3..])));
            }
            "grad" => cases
                .last_mut()
                .unwrap()
                .grads
                .push((us(tok[1]), us(tok[2]), floats(&tok[3..]))),
            "after" => cases
                .last_mut()
                .unwrap()
                .after
                .push((us(tok[1]), us(tok[2]), floats(&tok[3..]))),
            "end" => {}
            other => panic!("optim_sgd.txt: unknown record {other}"),
        }
    }
    cases
}

fn run_sgd_case<T: Float>(case: &SgdCase, tol: f64) {
    let params: Vec<Tensor<T>> = case.params.iter().map(|(s, v)| t::<T>(v, s).requires_grad()).collect();
    let mut opt = Sgd::new(params.clone(), case.config).unwrap();
    for step in 0..case.steps {
        let gs: Vec<(usize, Tensor<T>)> = case
            .grads
            .iter()
            .filter(|(s, _, _)| *s == step)
            .map(|(_, i, v)| (*i, t::<T>(v, &case.params[*i].0)))
            .collect();
        set_grads(&opt, &gs);
        opt.step().unwrap();
        for (_, i, want) in case.after.iter().filter(|(s, _, _)| *s == step) {
            assert_close(
                &vals(&params[*i]),
                want,
                tol,
                &format!("{} ({}) step {step} param {i}", case.name, T::DTYPE),
            );
        }
    }
}

#[test]
fn sgd_matches_pytorch() {
    let cases = parse_sgd();
    assert!(cases.len() >= 6, "expected the fixture's cases, got {}", cases.len());
    for case in &cases {
        assert_eq!(case.after.len(), case.steps * case.params.len(), "{}", case.name);
        run_sgd_case::<f64>(case, 1e-13);
        run_sgd_case::<f32>(case, 2e-6);
    }
}

#[test]
fn schedules_match_pytorch() {
    let mut current: Option<Box<dyn LrSchedule>> = None;
    let mut checked = 0;
    for line in fixture("optim_schedule.txt").lines().skip(1) {
        let tok: Vec<&str> = line.split_whitespace().collect();
        let f = |i: usize| tok[i].parse::<f64>().unwrap();
        let u = |i: usize| tok[i].parse::<usize>().unwrap();
        match tok[0] {
            "cosine" => {
                current = Some(Box::new(CosineAnnealing {
                    base_lr: f(1),
                    min_lr: f(2),
                    t_max: u(3),
                }))
            }
            "step" => {
                current = Some(Box::new(StepDecay {
                    base_lr: f(1),
                    step_size: u(2),
                    gamma: f(3),
                }))
            }
            "sgdr" => {
                current = Some(Box::new(WarmRestarts {
                    base_lr: f(1),
                    min_lr: f(2),
                    t0: u(3),
                    t_mult: u(4),
                }))
            }
            "lr" => {
                let got = current.as_ref().unwrap().lr_at(f(1));
                // PyTorch's epoch-by-epoch recursions drift by a few ulps from the closed form.
                assert!((got - f(2)).abs() <= 1e-12, "{line}: got {got}");
                checked += 1;
            }
            other => panic!("optim_schedule.txt: unknown record {other}"),
        }
    }
    assert!(checked > 500, "only {checked} schedule values checked");
}

// ------------------------------------------------------------------ schedules: closed forms

#[test]
fn schedules_closed_forms() {
    use std::f64::consts::PI;
    let c = CosineAnnealing {
        base_lr: 0.2,
        min_lr: 0.02,
        t_max: 8,
    };
    for e in [0.0, 0.5, 3.0, 7.25, 8.0, 12.0] {
        let want = 0.02 + 0.18 * (1.0 + (PI * e / 8.0).cos()) / 2.0;
        assert!((c.lr_at(e) - want).abs() < 1e-15, "cosine at {e}");
    }
    assert_eq!(c.lr_at(-3.0), c.lr_at(0.0));
    assert_eq!(
        CosineAnnealing {
            base_lr: 0.2,
            min_lr: 0.02,
            t_max: 0
        }
        .lr_at(1.0),
        0.02
    );

    let s = StepDecay {
        base_lr: 0.1,
        step_size: 30,
        gamma: 0.1,
    };
    assert_eq!(s.lr_at(0.0), 0.1);
    assert!((s.lr_at(65.0) - 0.001).abs() < 1e-15);
    assert_eq!(
        StepDecay {
            base_lr: 0.1,
            step_size: 0,
            gamma: 0.1
        }
        .lr_at(50.0),
        0.1
    );

    // SGDR, t0 = 2, t_mult = 2: cycles [0,2) [2,6) [6,14) [14,30).
    let w = WarmRestarts {
        base_lr: 1.0,
        min_lr: 0.0,
        t0: 2,
        t_mult: 2,
    };
    for (e, t_cur, t_i) in [
        (0.0, 0.0, 2.0),
        (1.5, 1.5, 2.0),
        (2.0, 0.0, 4.0),
        (5.0, 3.0, 4.0),
        (6.0, 0.0, 8.0),
        (29.0, 15.0, 16.0),
    ] {
        assert_eq!(w.cycle(e), Some((t_cur, t_i)), "cycle at {e}");
        let want = (1.0 + (PI * t_cur / t_i).cos()) / 2.0;
        assert!((w.lr_at(e) - want).abs() < 1e-15, "sgdr at {e}");
    }
    let w1 = WarmRestarts {
        base_lr: 1.0,
        min_lr: 0.1,
        t0: 5,
        t_mult: 1,
    };
    assert_eq!(w1.lr_at(5.0), 1.0);
    assert!((w1.lr_at(57.5) - 0.55).abs() < 1e-15);
    assert!(WarmRestarts { t_mult: 3, ..w }.lr_at(1e300).is_finite());
    assert_eq!(WarmRestarts { t0: 0, ..w }.lr_at(3.0), 0.0);
}

// ------------------------------------------------------------------ clip_grad_norm

#[test]
fn clip_grad_norm_hand_values() {
    let a = t::<f64>(&[0.0, 0.0], &[2]).requires_grad();
    let b = t::<f64>(&[0.0], &[1]).requires_grad();
    let unused = t::<f64>(&[0.0], &[1]).requires_grad();
    let params = [a.clone(), b.clone(), unused.clone()];
    let give = || {
        for p in &params {
            p.zero_grad();
        }
        let l = a.mul(&t(&[3.0, 4.0], &[2])).unwrap().sum().unwrap();
        let l = l.add(&b.mul(&t(&[12.0], &[1])).unwrap().sum().unwrap()).unwrap();
        l.backward().unwrap();
    };
    // Total norm sqrt(9 + 16 + 144) = 13. Below the threshold: untouched.
    give();
    assert_eq!(clip_grad_norm(&params, 20.0).unwrap(), 13.0);
    assert_eq!(vals(&a.grad().unwrap()), vec![3.0, 4.0]);
    assert_eq!(vals(&b.grad().unwrap()), vec![12.0]);
    assert!(unused.grad().is_none());
    // Above: scaled by 6.5 / (13 + 1e-6).
    give();
    assert_eq!(clip_grad_norm(&params, 6.5).unwrap(), 13.0);
    let k = 6.5 / (13.0 + 1e-6);
    assert_close(&vals(&a.grad().unwrap()), &[3.0 * k, 4.0 * k], 1e-15, "a");
    assert_close(&vals(&b.grad().unwrap()), &[12.0 * k], 1e-15, "b");
    assert!(unused.grad().is_none());
    // The new norm is max_norm (up to the 1e-6).
    assert!((clip_grad_norm(&params, 100.0).unwrap() - 6.5).abs() < 1e-6);
    // No gradients at all: norm 0. Invalid max_norm: Err.
    assert_eq!(clip_grad_norm(std::slice::from_ref(&unused), 1.0).unwrap(), 0.0);
    assert!(matches!(
        clip_grad_norm(&params, -1.0),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(clip_grad_norm(&params, f64::NAN).is_err());
}

#[test]
fn clip_grad_norm_large_f32_is_f64_accurate() {
    let n = 100_003;
    let w = Tensor::<f32>::zeros(&[n], CPU).unwrap().requires_grad();
    let g: Vec<f64> = (0..n).map(|i| ((i % 7) as f64 - 3.0) * 0.25).collect();
    w.mul(&t::<f32>(&g, &[n])).unwrap().sum().unwrap().backward().unwrap();
    let want = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let total = clip_grad_norm(std::slice::from_ref(&w), 1.0).unwrap();
    assert!((total - want).abs() < 1e-9 * want, "{total} vs {want}");
    let after = clip_grad_norm(std::slice::from_ref(&w), 1e9).unwrap();
    assert!((after - 1.0).abs() < 1e-5, "{after}");
}

// ------------------------------------------------------------------ state, validation, versions

#[test]
fn state_round_trip_continues_bit_identically() {
    let c = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        dampening: 0.1,
        weight_decay: 1e-3,
        nesterov: false,
    };
    let grads = |s: usize| -> Vec<(usize, Tensor<f32>)> {
        vec![
            (0, t(&[0.1 * s as f64, -0.3, 0.7], &[3])),
            (1, t(&[(s as f64).sin(), 0.25, -1.5, 2.0], &[2, 2])),
        ]
    };
    let mk = |v: (Vec<f32>, Vec<f32>)| {
        vec![
            Tensor::from_vec(v.0, &[3], CPU).unwrap().requires_grad(),
            Tensor::from_vec(v.1, &[2, 2], CPU).unwrap().requires_grad(),
        ]
    };
    let pa = mk((vec![1.0, 2.0, 3.0], vec![-1.0, 0.5, 0.25, 4.0]));
    let mut a = Sgd::new(pa.clone(), c).unwrap();
    for s in 0..3 {
        set_grads(&a, &grads(s));
        a.step().unwrap();
    }
    a.set_lr(0.02);
    let saved: SgdState<f32> = a.state();
    assert_eq!(saved.step, 3);
    assert_eq!(saved.lr, 0.02);
    let pb = mk((pa[0].to_vec().unwrap(), pa[1].to_vec().unwrap()));
    let mut b = Sgd::new(pb.clone(), c).unwrap();
    b.load_state(saved.clone()).unwrap();
    assert_eq!(b.state(), saved);
    for s in 3..6 {
        set_grads(&a, &grads(s));
        a.step().unwrap();
        set_grads(&b, &grads(s));
        b.step().unwrap();
    }
    for (x, y) in pa.iter().zip(&pb) {
        let (x, y) = (x.to_vec().unwrap(), y.to_vec().unwrap());
        assert_eq!(
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
    assert_eq!(a.state(), b.state());
}

#[test]
fn load_state_rejects_mismatches() {
    let w = Tensor::<f64>::zeros(&[2, 3], CPU).unwrap().requires_grad();
    let mut opt = Sgd::new(
        vec![w.clone()],
        SgdConfig {
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    let before = opt.state();
    let bad = [
        SgdState {
            lr: 0.1,
            step: 1,
            momentum_buffers: vec![],
        },
        SgdState {
            lr: 0.1,
            step: 1,
            momentum_buffers: vec![None, None],
        },
        SgdState {
            lr: 0.1,
            step: 1,
            momentum_buffers: vec![Some(vec![0.0; 5])],
        },
        SgdState {
            lr: -0.1,
            step: 1,
            momentum_buffers: vec![None],
        },
    ];
    for s in bad {
        assert!(opt.load_state(s.clone()).is_err(), "{s:?}");
        assert_eq!(opt.state(), before, "a failed load must not change the state");
    }
    let mut plain = Sgd::new(vec![w], SgdConfig::default()).unwrap();
    let with_buf = SgdState {
        lr: 0.1,
        step: 1,
        momentum_buffers: vec![Some(vec![0.0; 6])],
    };
    assert!(plain.load_state(with_buf).is_err(), "buffers without momentum");
}

#[test]
fn config_validation_as_pytorch() {
    let w = || vec![Tensor::<f32>::zeros(&[1], CPU).unwrap().requires_grad()];
    let d = SgdConfig::default();
    assert_eq!(
        (d.lr, d.momentum, d.weight_decay, d.nesterov, d.dampening),
        (1e-3, 0.0, 0.0, false, 0.0)
    );
    let bad = [
        SgdConfig { lr: -0.1, ..d },
        SgdConfig { lr: f64::NAN, ..d },
        SgdConfig { momentum: -0.5, ..d },
        SgdConfig {
            weight_decay: -1e-4,
            ..d
        },
        SgdConfig { nesterov: true, ..d },
        SgdConfig {
            nesterov: true,
            momentum: 0.9,
            dampening: 0.1,
            ..d
        },
        SgdConfig {
            dampening: f64::INFINITY,
            ..d
        },
    ];
    for c in bad {
        assert!(matches!(Sgd::new(w(), c), Err(Error::InvalidArgument { .. })), "{c:?}");
    }
    assert!(
        Sgd::new(
            w(),
            SgdConfig {
                nesterov: true,
                momentum: 0.9,
                ..d
            }
        )
        .is_ok()
    );
    // A non-leaf cannot be optimised.
    let x = Tensor::<f32>::ones(&[2], CPU).unwrap().requires_grad();
    assert!(Sgd::new(vec![x.mul_scalar(2.0).unwrap()], d).is_err());
    // A negative learning rate set later fails at step, leaving the parameter alone.
    let p = w();
    let mut opt = Sgd::new(p.clone(), d).unwrap();
    set_grads(&opt, &[(0, t(&[1.0], &[1]))]);
    opt.set_lr(-1.0);
    assert!(opt.step().is_err());
    assert_eq!(p[0].to_vec().unwrap(), vec![0.0]);
    assert_eq!(opt.steps(), 0);
}

#[test]
fn skipped_params_keep_their_momentum() {
    let a = Tensor::<f64>::zeros(&[2], CPU).unwrap().requires_grad();
    let b = Tensor::<f64>::zeros(&[1], CPU).unwrap().requires_grad();
    let mut opt = Sgd::new(
        vec![a.clone(), b.clone()],
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    set_grads(&opt, &[(0, t(&[1.0, 2.0], &[2])), (1, t(&[3.0], &[1]))]);
    opt.step().unwrap();
    let buf_b = opt.state().momentum_buffers[1].clone();
    let b_val = b.to_vec().unwrap();
    set_grads(&opt, &[(0, t(&[1.0, 2.0], &[2]))]);
    opt.step().unwrap();
    assert_eq!(opt.state().momentum_buffers[1], buf_b);
    assert_eq!(b.to_vec().unwrap(), b_val);
    assert_eq!(opt.state().momentum_buffers[0], Some(vec![1.9, 3.8]));
    // A parameter that never had a gradient has no buffer.
    let c = Tensor::<f64>::zeros(&[1], CPU).unwrap().requires_grad();
    let mut opt = Sgd::new(
        vec![c],
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    )
    .unwrap();
    opt.step().unwrap();
    assert_eq!(opt.state().momentum_buffers, vec![None]);
}

#[test]
fn step_bumps_version_so_stale_graph_errs() {
    let w = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[2], CPU)
        .unwrap()
        .requires_grad();
    let mut opt = Sgd::new(
        vec![w.clone()],
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    w.mul(&w).unwrap().sum().unwrap().backward().unwrap();
    let stale = w.mul(&w).unwrap().sum().unwrap(); // saves w for its backward
    opt.step().unwrap();
    assert_eq!(w.to_vec().unwrap(), vec![1.0 - 0.1 * 2.0, 2.0 - 0.1 * 4.0]);
    assert!(matches!(stale.backward(), Err(Error::Autograd { .. })));
    // A graph built after the step is fine.
    opt.zero_grad();
    w.mul(&w).unwrap().sum().unwrap().backward().unwrap();
    assert_close(&vals(&w.grad().unwrap()), &[1.6, 3.2], 1e-15, "fresh grad");
}

#[test]
fn gradient_aliasing_its_parameter_does_not_deadlock() {
    // backward_with(&w) seeds the gradient with w's own storage.
    let w = Tensor::<f64>::from_vec(vec![1.0, -2.0], &[2], CPU)
        .unwrap()
        .requires_grad();
    let mut opt = Sgd::new(
        vec![w.clone()],
        SgdConfig {
            lr: 0.5,
            ..Default::default()
        },
    )
    .unwrap();
    w.backward_with(&w).unwrap();
    opt.step().unwrap();
    assert_eq!(w.to_vec().unwrap(), vec![0.5, -1.0]);
}
