//! A training run interrupted by a checkpoint and resumed in a fresh process state continues
//! bit-identically to the uninterrupted run (model, batch-norm running stats, momenta, epoch
//! and RNG state all restored).

use smallgrad::data::{Augment, Batches, Dataset, Normalization};
use smallgrad::loss::CosineLoss;
use smallgrad::nn::resnet::{CifarResNetConfig, cifar_resnet};
use smallgrad::nn::{Module, state_dict};
use smallgrad::optim::{Sgd, SgdConfig};
use smallgrad::{Rng, checkpoint};

struct Run {
    model: smallgrad::nn::resnet::ResNet<f32>,
    opt: Sgd<f32>,
    rng: Rng,
    epoch: usize,
}

fn fresh() -> Run {
    let model = cifar_resnet::<f32>(
        20,
        &CifarResNetConfig {
            in_channels: 1,
            num_classes: 4,
            width: 1,
            seed: 11,
        },
    )
    .unwrap();
    let cfg = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..Default::default()
    };
    let opt = Sgd::new(model.parameters(), cfg).unwrap();
    Run {
        model,
        opt,
        rng: Rng::new(99),
        epoch: 0,
    }
}

fn train_epochs(run: &mut Run, ds: &Dataset, until: usize) {
    let norm = Normalization::from_dataset(ds).unwrap();
    while run.epoch < until {
        let seed = run.rng.next_u64();
        let batches = Batches::new(ds, 4, seed, false)
            .unwrap()
            .with_augment(Augment { pad: 1, flip: true })
            .unwrap()
            .with_normalization(norm.clone())
            .unwrap();
        for (x, y) in batches {
            let loss = CosineLoss::default()
                .forward(&run.model.forward(&x).unwrap(), &y)
                .unwrap();
            run.opt.zero_grad();
            loss.backward().unwrap();
            run.opt.step().unwrap();
        }
        run.epoch += 1;
    }
}

fn bits(run: &Run) -> Vec<(String, Vec<u32>)> {
    state_dict(&run.model)
        .into_iter()
        .map(|(n, t)| (n, t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn resume_continues_bit_identically() {
    let ds = Dataset::synthetic(3, 4, 1, 8, 8, 5).unwrap();
    let mut straight = fresh();
    train_epochs(&mut straight, &ds, 3);

    let mut first = fresh();
    train_epochs(&mut first, &ds, 1);
    let path = std::env::temp_dir().join(format!("smallgrad-resume-{}.safetensors", std::process::id()));
    checkpoint::save(
        &path,
        &[("model", &first.model)],
        &[("opt", &first.opt)],
        first.epoch,
        &first.rng,
        &[],
    )
    .unwrap();
    drop(first);

    let mut resumed = fresh();
    // Scramble the fresh run so that only the checkpoint can make it right.
    train_epochs(&mut resumed, &Dataset::synthetic(2, 4, 1, 8, 8, 77).unwrap(), 1);
    let st = checkpoint::load(&path, &[("model", &resumed.model)], &mut [("opt", &mut resumed.opt)]).unwrap();
    std::fs::remove_file(&path).ok();
    resumed.epoch = st.epoch;
    resumed.rng = st.rng;
    train_epochs(&mut resumed, &ds, 3);

    let (a, b) = (bits(&straight), bits(&resumed));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(va == vb, "{na} differs after resume");
    }
    assert_eq!(straight.opt.steps(), resumed.opt.steps());
}

#[test]
fn checkpoint_of_another_model_is_refused() {
    let run = fresh();
    let path = std::env::temp_dir().join(format!("smallgrad-refuse-{}.safetensors", std::process::id()));
    checkpoint::save(&path, &[("model", &run.model)], &[("opt", &run.opt)], 0, &run.rng, &[]).unwrap();
    let other = cifar_resnet::<f32>(
        32,
        &CifarResNetConfig {
            in_channels: 1,
            num_classes: 4,
            width: 1,
            seed: 0,
        },
    )
    .unwrap();
    let mut opt = Sgd::new(other.parameters(), SgdConfig::default()).unwrap();
    let err = checkpoint::load(&path, &[("model", &other)], &mut [("opt", &mut opt)]);
    std::fs::remove_file(&path).ok();
    assert!(err.is_err());
}
