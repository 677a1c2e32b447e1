//! Training checkpoints: everything needed to continue a run bit-identically, in one
//! safetensors file (written atomically by [`serialize::save`]).
//!
//! A checkpoint holds, for each named module, its parameters and buffers (batch norm's running
//! statistics) as `<module>.<tensor name>`; for each named optimiser its momentum buffers as
//! `<optimiser>.momentum.<i>` and its learning rate and step count in the metadata; the number
//! of completed epochs; the state of the run's [`Rng`]; and any extra metadata (e.g. the
//! configuration, so that resuming with another one can be refused).
//!
//! ```
//! use smallgrad::{Device, Rng, Tensor, checkpoint};
//! use smallgrad::nn::{Linear, Module};
//! use smallgrad::optim::{Sgd, SgdConfig};
//! let model = Linear::<f32>::new(3, 2, true, &mut Rng::new(0), Device::Cpu)?;
//! let mut opt = Sgd::new(model.parameters(), SgdConfig { lr: 0.1, momentum: 0.9, ..Default::default() })?;
//! let path = std::env::temp_dir().join("smallgrad-doc-checkpoint.safetensors");
//! checkpoint::save(&path, &[("model", &model)], &[("opt", &opt)], 3, &Rng::new(7), &[])?;
//! let state = checkpoint::load(&path, &[("model", &model)], &mut [("opt", &mut opt)])?;
//! assert_eq!((state.epoch, state.rng), (3, Rng::new(7)));
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), smallgrad::Error>(())
//! ```

use crate::dtype::Float;
use crate::nn::{Module, load_state_dict, state_dict};
use crate::optim::{Sgd, SgdState};
use crate::{Device, Error, Result, Rng, Tensor, serialize};
use std::path::Path;

/// What [`load`] restores besides the modules and optimisers.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingState {
    /// Completed epochs.
    pub epoch: usize,
    /// The run's generator, as it was when the checkpoint was written.
    pub rng: Rng,
    /// The extra metadata given to [`save`].
    pub metadata: Vec<(String, String)>,
}

const RESERVED: [&str; 2] = ["epoch", "rng"];

/// Writes a training checkpoint to `path` (atomically: a temporary file, then a rename).
/// `Err` if a name is empty or contains a `.`, or an extra metadata key collides with the
/// reserved ones (`epoch`, `rng`, `<optimiser>.lr`, `<optimiser>.step`).
pub fn save<T: Float>(
    path: impl AsRef<Path>,
    modules: &[(&str, &dyn Module<T>)],
    optimizers: &[(&str, &Sgd<T>)],
    epoch: usize,
    rng: &Rng,
    extra: &[(String, String)],
) -> Result<()> {
    let mut tensors = Vec::new();
    let mut meta: Vec<(String, String)> = vec![
        ("epoch".into(), epoch.to_string()),
        (
            "rng".into(),
            rng.state.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(" "),
        ),
    ];
    check_names(
        modules
            .iter()
            .map(|(n, _)| *n)
            .chain(optimizers.iter().map(|(n, _)| *n)),
    )?;
    for (name, m) in modules {
        tensors.extend(state_dict(*m).into_iter().map(|(n, t)| (format!("{name}.{n}"), t)));
    }
    for (name, opt) in optimizers {
        let st = opt.try_state()?;
        for (i, b) in st.momentum_buffers.iter().enumerate() {
            if let Some(b) = b {
                tensors.push((
                    format!("{name}.momentum.{i}"),
                    Tensor::from_vec(b.clone(), &[b.len()], Device::Cpu)?,
                ));
            }
        }
        meta.push((format!("{name}.lr"), format!("{:e}", st.lr)));
        meta.push((format!("{name}.step"), st.step.to_string()));
    }
    for (k, v) in extra {
        if meta.iter().any(|(m, _)| m == k) || RESERVED.contains(&k.as_str()) {
            return Err(Error::invalid(
                "checkpoint::save",
                format!("metadata key `{k}` is reserved"),
            ));
        }
        meta.push((k.clone(), v.clone()));
    }
    serialize::save(path, &tensors, &meta)
}

/// Names must be non-empty, without '.', and distinct across modules and optimisers, so that
/// every tensor of the file belongs to exactly one of them.
fn check_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if name.is_empty() || name.contains('.') || seen.contains(&name) {
            return Err(Error::invalid(
                "checkpoint",
                format!("name `{name}` must be non-empty, without '.', and used once"),
            ));
        }
        seen.push(name);
    }
    Ok(())
}

fn corrupt(path: &Path, msg: String) -> Error {
    Error::Io {
        path: path.display().to_string(),
        msg,
    }
}

/// Restores `modules` and `optimizers` (matched by name) from a checkpoint written by [`save`]
/// and returns the epoch, RNG state and extra metadata. Everything is checked before anything
/// is changed where possible: a missing or misshapen tensor is an `Err`.
pub fn load<T: Float>(
    path: impl AsRef<Path>,
    modules: &[(&str, &dyn Module<T>)],
    optimizers: &mut [(&str, &mut Sgd<T>)],
) -> Result<TrainingState> {
    let path = path.as_ref();
    check_names(
        modules
            .iter()
            .map(|(n, _)| *n)
            .chain(optimizers.iter().map(|(n, _)| *n)),
    )?;
    let (tensors, meta) = serialize::load::<T>(path)?;
    let get = |k: &str| {
        meta.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| corrupt(path, format!("metadata `{k}` is missing")))
    };
    let epoch: usize = get("epoch")?
        .parse()
        .map_err(|_| corrupt(path, "metadata `epoch` is not a number".into()))?;
    let words: Vec<u64> = get("rng")?
        .split(' ')
        .map(|w| w.parse())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| corrupt(path, "metadata `rng` is not four numbers".into()))?;
    let state: [u64; 4] = words
        .try_into()
        .map_err(|_| corrupt(path, "metadata `rng` is not four numbers".into()))?;
    // Optimiser states first (pure parsing), then modules, then optimisers.
    let mut opt_states = Vec::new();
    for (name, opt) in optimizers.iter() {
        let lr: f64 = get(&format!("{name}.lr"))?
            .parse()
            .map_err(|_| corrupt(path, format!("`{name}.lr` is not a number")))?;
        let step: u64 = get(&format!("{name}.step"))?
            .parse()
            .map_err(|_| corrupt(path, format!("`{name}.step` is not a number")))?;
        let mut momentum_buffers = Vec::new();
        for i in 0..opt.params().len() {
            let key = format!("{name}.momentum.{i}");
            momentum_buffers.push(match tensors.iter().find(|(n, _)| *n == key) {
                Some((_, t)) => Some(t.to_vec()?),
                None => None,
            });
        }
        opt_states.push(SgdState {
            lr,
            step,
            momentum_buffers,
        });
    }
    for (name, m) in modules {
        let prefix = format!("{name}.");
        let own: Vec<(String, Tensor<T>)> = tensors
            .iter()
            .filter_map(|(n, t)| n.strip_prefix(&prefix).map(|s| (s.to_string(), t.clone())))
            .collect();
        load_state_dict(*m, &own)?;
    }
    for ((_, opt), st) in optimizers.iter_mut().zip(opt_states) {
        opt.load_state(st)?;
    }
    let metadata = meta
        .into_iter()
        .filter(|(k, _)| {
            !RESERVED.contains(&k.as_str())
                && !optimizers
                    .iter()
                    .any(|(n, _)| k == &format!("{n}.lr") || k == &format!("{n}.step"))
        })
        .collect();
    Ok(TrainingState {
        epoch,
        rng: Rng::from_state(state),
        metadata,
    })
}
