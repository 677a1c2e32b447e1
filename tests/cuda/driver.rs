//! The CUDA backend's driver layer: what happens when the driver fails (every failure an `Err`
//! naming the call, no panic, no leaked allocation), contexts and threads, the allocator's reuse,
//! and smallgrad's call counters against the driver's own.
//!
//! Most failures are injected by the simulator (cuda-sim: `CUDA_SIM_FAIL_*`, read when a process
//! starts), so those tests run their body in a child process of this binary with the variables
//! set; against a real driver they print `not the simulator: skipping <test>`. Without a GPU at
//! all every test prints `no CUDA device: skipping <test>` (or fails, with
//! `SMALLGRAD_REQUIRE_CUDA=1`).

use crate::common::cuda::{gpu, tiny_resnet};
use crate::common::sim::{self, CHILD_DONE, is_child, run_child};
use crate::common::{normal, targets, to_f32};
use smallgrad::loss::CosineLoss;
use smallgrad::nn::Module;
use smallgrad::optim::{Sgd, SgdConfig};
use smallgrad::{Device, Error, Result, Rng, Tensor};
use std::ffi::c_void;

unsafe extern "C" {
    fn cuDevicePrimaryCtxRetain(ctx: *mut *mut c_void, dev: i32) -> i32;
    fn cuCtxSetCurrent(ctx: *mut c_void) -> i32;
    fn cuCtxGetCurrent(ctx: *mut *mut c_void) -> i32;
}

/// The GPU, and the simulator behind it; otherwise prints why the test does nothing.
fn on_simulator(test: &str) -> bool {
    if gpu(test).is_none() {
        return false;
    }
    if !sim::is_simulator() {
        println!("not the simulator: skipping {test} (it injects faults through cuda-sim)");
        return false;
    }
    true
}

fn current_context() -> *mut c_void {
    let mut c = std::ptr::null_mut();
    // SAFETY: out-pointer.
    assert_eq!(unsafe { cuCtxGetCurrent(&mut c) }, 0);
    c
}

fn message(e: &Error) -> String {
    e.to_string()
}

/// No allocation is lost: every block the driver holds is one the allocator holds (cached, as
/// nothing is in use once the test's tensors are gone).
fn assert_no_leak(dev: Device) {
    smallgrad::cuda::synchronize(dev).unwrap();
    let s = smallgrad::cuda::memory_stats(dev).unwrap();
    assert_eq!(s.bytes_in_use, 0, "{s:?}");
    let live = sim::counters().unwrap().live_allocs;
    assert_eq!(
        live,
        s.device_allocs - s.device_frees,
        "driver {live} live blocks, allocator {s:?}"
    );
}

/// The child-process scaffold of a test: in the child started for `name`, runs `body` (and
/// says it finished); in the parent, if the simulator is the driver (or `sim_only` is false and
/// there is a GPU), starts one child per environment in `envs` and returns their outputs.
fn child_test(name: &str, sim_only: bool, envs: &[&[(&str, &str)]], body: impl FnOnce()) -> Vec<String> {
    if is_child(name) {
        body();
        println!("{CHILD_DONE}");
        return Vec::new();
    }
    let here = if sim_only {
        on_simulator(name)
    } else {
        gpu(name).is_some()
    };
    if !here {
        return Vec::new();
    }
    envs.iter()
        .map(|env| run_child(&format!("driver::{name}"), env))
        .collect()
}

/// ResNet-20 on `dev` and the seed's SGD over its parameters (lr 0.05, momentum 0.9, wd 5e-4).
fn model_and_sgd(dev: Device) -> (smallgrad::nn::resnet::ResNet<f32>, Sgd<f32>) {
    let model = tiny_resnet(dev).unwrap();
    let config = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..Default::default()
    };
    let opt = Sgd::new(model.parameters(), config).unwrap();
    (model, opt)
}

/// A ResNet-20 training step on `dev` (the seed's loss, SGD with momentum and weight decay) over
/// a fixed random batch of `batch` 12x12 images; returns the loss.
fn resnet_trainer(dev: Device, batch: usize) -> impl FnMut() -> Result<f32> {
    let (model, mut opt) = model_and_sgd(dev);
    let mut rng = Rng::new(1);
    let x = to_f32(&normal(&[batch, 1, 12, 12], &mut rng)).to_device(dev).unwrap();
    let y = targets(batch, 10, &mut rng);
    move || {
        opt.zero_grad();
        let loss = CosineLoss::default().forward(&model.forward(&x)?, &y)?;
        loss.backward()?;
        opt.step()?;
        loss.item()
    }
}

#[test]
fn oom_on_the_nth_allocation_recovers_by_freeing_the_cache() {
    let outs = child_test(
        "oom_on_the_nth_allocation_recovers_by_freeing_the_cache",
        true,
        &[&[("CUDA_SIM_FAIL_ALLOC", "3")]],
        || {
            let dev = Device::Cuda(0);
            let a = Tensor::<f32>::zeros(&[1000], dev).unwrap(); // cuMemAlloc #1
            let b = Tensor::<f32>::zeros(&[3000], dev).unwrap(); // #2
            drop(b); // cached
            // #3 fails: the cache (b's block) is freed after a synchronisation and #4 succeeds
            let c = Tensor::<f32>::zeros(&[9000], dev).unwrap();
            let s = smallgrad::cuda::memory_stats(dev).unwrap();
            assert_eq!((s.device_allocs, s.device_frees), (3, 1), "{s:?}");
            assert_eq!(c.sum().unwrap().item().unwrap(), 0.0);
            drop((a, c));
            assert_no_leak(dev);
        },
    );
    for o in &outs {
        assert!(o.contains("injected error 2 into call #3 of cuMemAlloc_v2"), "{o}");
    }
}

#[test]
fn oom_from_the_nth_allocation_on_is_an_err_and_leaks_nothing() {
    child_test(
        "oom_from_the_nth_allocation_on_is_an_err_and_leaks_nothing",
        true,
        &[&[("CUDA_SIM_FAIL_ALLOC", "2-")]],
        || {
            let dev = Device::Cuda(0);
            let x = Tensor::<f32>::ones(&[2, 3, 8, 8], dev).unwrap(); // the only allocation that works
            let (w, v) = (x.reshape(&[6, 64]).unwrap(), x.reshape(&[64, 6]).unwrap()); // views
            let ops: Vec<(&str, Result<Tensor<f32>>)> = vec![
                ("exp", x.exp()),
                ("sum", x.sum()),
                ("matmul", w.matmul(&v)),
                ("max_pool2d", x.max_pool2d(2, 2, 0)),
                ("softmax", x.softmax(1)),
                (
                    "to_device",
                    Tensor::<f32>::zeros(&[5], Device::Cpu).unwrap().to_device(dev),
                ),
            ];
            for (op, r) in ops {
                match r {
                    Err(Error::OutOfMemory { msg }) => assert!(msg.contains("cuMemAlloc"), "{op}: {msg}"),
                    other => panic!(
                        "{op}: expected OutOfMemory, got {:?}",
                        other.map(|t| t.shape().to_vec())
                    ),
                }
            }
            drop((x, w, v));
            assert_no_leak(dev);
        },
    );
}

#[test]
fn a_failed_launch_is_an_err_and_the_device_still_works() {
    child_test(
        "a_failed_launch_is_an_err_and_the_device_still_works",
        true,
        &[&[("CUDA_SIM_FAIL_LAUNCH", "2")]],
        || {
            let dev = Device::Cuda(0);
            let x = Tensor::<f32>::from_vec(vec![0.0, 1.0, 2.0], &[3], dev).unwrap();
            let y = x.exp().unwrap(); // launch #1
            let e = y.mul_scalar(2.0).unwrap_err(); // #2 fails
            let m = message(&e);
            assert!(
                m.contains("cuLaunchKernel(unary_f32)") && m.contains("CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (701)"),
                "{m}"
            );
            let z = y.add_scalar(1.0).unwrap(); // #3 works
            let want: Vec<f32> = [0.0f32, 1.0, 2.0].iter().map(|v| v.exp() + 1.0).collect();
            assert_eq!(z.to_vec().unwrap(), want);
            drop((x, y, z));
            assert_no_leak(dev);
        },
    );
}

#[test]
fn error_codes_unknown_to_anyone_are_errs_naming_the_call() {
    let faults = "cuMemcpyDtoHAsync_v2:1:912,cuLaunchKernel:1:4242,cublasSgemmStridedBatched:1:99";
    child_test(
        "error_codes_unknown_to_anyone_are_errs_naming_the_call",
        true,
        &[&[("CUDA_SIM_FAIL_CALL", faults)]],
        || {
            let dev = Device::Cuda(0);
            let x = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2], dev).unwrap();
            // 912: CUDA_ERROR_INVALID_CLUSTER_SIZE, newer than the CUDA 11 enums of cust_raw.
            let m = message(&x.to_vec().unwrap_err());
            assert!(
                m.contains("cuMemcpyDtoHAsync failed") && m.contains("CUDA_ERROR_INVALID_CLUSTER_SIZE (912)"),
                "{m}"
            );
            // 4242: a code no driver knows.
            let m = message(&x.exp().unwrap_err());
            assert!(
                m.contains("cuLaunchKernel(unary_f32) failed") && m.contains("CUDA error 4242"),
                "{m}"
            );
            // 99: a cuBLAS status no cuBLAS has.
            let m = message(&x.matmul(&x).unwrap_err());
            assert!(
                m.contains("cublasSgemmStridedBatched failed") && m.contains("cuBLAS status 99"),
                "{m}"
            );
            // each was injected once: the same calls work now
            assert_eq!(x.to_vec().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
            assert_eq!(x.matmul(&x).unwrap().to_vec().unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
            drop(x);
            assert_no_leak(dev);
        },
    );
}

#[test]
fn an_asynchronous_fault_names_its_kernel_under_smallgrad_cuda_sync() {
    child_test(
        "an_asynchronous_fault_names_its_kernel_under_smallgrad_cuda_sync",
        true,
        &[&[("CUDA_SIM_FAIL_ASYNC", "1"), ("SMALLGRAD_CUDA_SYNC", "1")]],
        || {
            let dev = Device::Cuda(0);
            let x = Tensor::<f32>::from_vec(vec![1.0, 2.0], &[2], dev).unwrap();
            let m = message(&x.exp().unwrap_err()); // launch #1 faults when it runs
            assert!(
                m.contains("cuStreamSynchronize (after unary_f32) failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)"),
                "{m}"
            );
            // as on a GPU, a faulted context stays faulted
            let m = message(&x.to_vec().unwrap_err());
            assert!(m.contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "{m}");
        },
    );
}

#[test]
fn a_driver_too_old_for_the_ptx_shows_the_jit_log() {
    child_test(
        "a_driver_too_old_for_the_ptx_shows_the_jit_log",
        true,
        &[&[("CUDA_SIM_PTX_MAX", "8.8")]],
        || {
            let m = message(&Device::Cuda(0).check_available().unwrap_err());
            assert!(
                m.contains("CUDA_ERROR_UNSUPPORTED_PTX_VERSION (222)")
                    && m.contains("JIT error log")
                    && m.contains("Unsupported .version 9.0")
                    && m.contains("nvcc 13.0"),
                "{m}"
            );
            assert_eq!(Device::cuda_if_available(0), Device::Cpu);
        },
    );
}

#[test]
fn no_device_is_an_err() {
    child_test("no_device_is_an_err", true, &[&[("CUDA_SIM_DEVICES", "0")]], || {
        let m = message(&Device::Cuda(0).check_available().unwrap_err());
        assert!(
            m.contains("no CUDA device") && m.contains("CUDA_ERROR_NO_DEVICE"),
            "{m}"
        );
        assert!(Tensor::<f32>::zeros(&[3], Device::Cuda(0)).is_err());
        assert_eq!(Device::cuda_if_available(0), Device::Cpu);
    });
}

#[test]
fn using_and_dropping_buffers_leaves_the_threads_context_alone() {
    child_test(
        "using_and_dropping_buffers_leaves_the_threads_context_alone",
        true,
        &[
            &[("CUDA_SIM_DEVICES", "2")],
            &[("CUDA_SIM_DEVICES", "2"), ("SMALLGRAD_CUDA_NO_CACHING", "1")],
        ],
        || {
            let (d0, d1) = (Device::Cuda(0), Device::Cuda(1));
            d0.check_available().unwrap();
            d1.check_available().unwrap();
            let mut ctx0 = std::ptr::null_mut();
            // SAFETY: out-pointer, then our own retained context.
            assert_eq!(unsafe { cuDevicePrimaryCtxRetain(&mut ctx0, 0) }, 0);
            for current in [ctx0, std::ptr::null_mut()] {
                // SAFETY: a live context, or none.
                assert_eq!(unsafe { cuCtxSetCurrent(current) }, 0);
                let t = Tensor::<f32>::ones(&[1000], d1).unwrap();
                assert_eq!(current_context(), current, "after an upload to cuda:1");
                let u = t.exp().unwrap();
                assert_eq!(u.to_vec().unwrap()[0], 1.0f32.exp());
                assert_eq!(current_context(), current, "after a kernel and a download on cuda:1");
                drop((t, u));
                assert_eq!(current_context(), current, "after dropping cuda:1 buffers");
            }
        },
    );
}

/// rayon's workers and fresh threads have no current context: every entry point binds its own.
#[test]
fn works_from_threads_that_have_no_context() {
    let Some(dev) = gpu("works_from_threads_that_have_no_context") else {
        return;
    };
    use rayon::prelude::*;
    let sums: Vec<f32> = (0..8)
        .into_par_iter()
        .map(|i| {
            let t = Tensor::<f32>::from_vec(vec![i as f32; 100], &[100], dev)?;
            t.mul_scalar(2.0)?.sum()?.item()
        })
        .collect::<Result<_>>()
        .unwrap();
    assert_eq!(sums, (0..8).map(|i| 200.0 * i as f32).collect::<Vec<_>>());
    let t = Tensor::<f32>::ones(&[10], dev).unwrap();
    let h = std::thread::spawn(move || t.add_scalar(1.0).and_then(|u| u.to_vec()));
    assert_eq!(h.join().unwrap().unwrap(), vec![2.0; 10]);
}

/// TF32 is an explicit opt-in: off by default; on, f32 products round their inputs to TF32
/// (errors near 1e-3, where full f32 stays near 1e-6); f64 products are never affected; off
/// again, full f32 comes back. In its own process: the switch is per device, for every thread.
#[test]
fn tf32_is_opt_in_and_only_for_f32() {
    child_test("tf32_is_opt_in_and_only_for_f32", true, &[&[]], || {
        let dev = Device::Cuda(0);
        let mut rng = Rng::new(11);
        let (a, b) = (normal(&[48, 64], &mut rng), normal(&[64, 40], &mut rng));
        let want = a.matmul(&b).unwrap().to_vec().unwrap();
        let worst = |got: &[f64]| {
            got.iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
                .fold(0.0, f64::max)
        };
        let f32_err = || {
            let (a, b) = (to_f32(&a).to_device(dev).unwrap(), to_f32(&b).to_device(dev).unwrap());
            let c = a.matmul(&b).unwrap().to_vec().unwrap();
            worst(&c.iter().map(|&v| f64::from(v)).collect::<Vec<_>>())
        };
        let f64_bits = || {
            let (a, b) = (a.to_device(dev).unwrap(), b.to_device(dev).unwrap());
            a.matmul(&b).unwrap().to_vec().unwrap()
        };
        assert!(!smallgrad::cuda::tf32(dev).unwrap(), "TF32 must be off by default");
        let (full, f64_before) = (f32_err(), f64_bits());
        smallgrad::cuda::set_tf32(dev, true).unwrap();
        let (tf32, f64_tf32) = (f32_err(), f64_bits());
        smallgrad::cuda::set_tf32(dev, false).unwrap();
        let back = f32_err();
        assert!(full < 1e-5, "full f32: {full}");
        assert!(tf32 > 1e-4 && tf32 < 2e-2, "TF32 should cost about 1e-3: {tf32}");
        assert_eq!(back, full, "TF32 off again gives full f32 again");
        assert_eq!(f64_tf32, f64_before, "f64 products must not change under TF32");
    });
}

/// What one warm training step asks of the driver, by smallgrad's own counters (the same on a
/// GPU and on the simulator): the input batch uploaded in the step, forward, the seed's loss,
/// backward, SGD, and the caller's `loss.item()`.
fn warm_step_counts(batch: usize) -> smallgrad::cuda::Counters {
    let dev = Device::Cuda(0);
    let (model, mut opt) = model_and_sgd(dev);
    let mut rng = Rng::new(3);
    let x_host = to_f32(&normal(&[batch, 1, 12, 12], &mut rng));
    let y = targets(batch, 10, &mut rng);
    let mut step = || -> Result<f32> {
        let x = x_host.to_device(dev)?;
        opt.zero_grad();
        let loss = CosineLoss::default().forward(&model.forward(&x)?, &y)?;
        loss.backward()?;
        opt.step()?;
        loss.item()
    };
    for _ in 0..2 {
        step().unwrap(); // warm-up: momentum buffers, the allocator's cache, the upload slots
    }
    let before = smallgrad::cuda::counters(dev).unwrap();
    step().unwrap();
    smallgrad::cuda::counters(dev).unwrap().since(&before)
}

/// A warm ResNet-20 training step never waits for the GPU before its end: exactly one
/// synchronisation and one device-to-host copy (the caller's `loss.item()`), two host-to-device
/// copies (the input batch and the targets, neither waited for), no `cuMemAlloc`; and the
/// numbers of kernel launches and cuBLAS calls do not grow with the batch. In its own process,
/// so that no other test's calls are counted.
#[test]
fn a_warm_training_step_waits_for_the_gpu_once() {
    child_test(
        "a_warm_training_step_waits_for_the_gpu_once",
        false,
        &[&[("CUDA_SIM_SCHEDULES", "1"), ("CUDA_SIM_RACECHECK", "0")]],
        || {
            let (a, b) = (warm_step_counts(2), warm_step_counts(5));
            for (batch, c) in [(2, &a), (5, &b)] {
                println!("warm ResNet-20 step, batch {batch}: {c:?}");
                assert_eq!(c.synchronizations, 1, "batch {batch}: synchronisations, {c:?}");
                assert_eq!(c.d2h_copies, 1, "batch {batch}: device-to-host copies, {c:?}");
                assert_eq!(c.d2h_bytes, 4, "batch {batch}: the f32 loss is the one read, {c:?}");
                assert_eq!(c.h2d_copies, 2, "batch {batch}: host-to-device copies, {c:?}");
                assert_eq!(c.device_allocs, 0, "batch {batch}: cuMemAlloc calls, {c:?}");
            }
            // The input (4 bytes per pixel) and the targets (8 bytes each) are all that cross.
            assert_eq!(a.h2d_bytes, 2 * (144 * 4 + 8), "{a:?}");
            assert_eq!(b.h2d_bytes, 5 * (144 * 4 + 8), "{b:?}");
            assert_eq!(a.cublas_calls, b.cublas_calls, "cuBLAS calls grow with the batch");
            assert_eq!(a.launches, b.launches, "launches grow with the batch");
        },
    );
}

#[test]
fn smallgrads_counters_agree_with_the_drivers() {
    let outs = child_test("smallgrads_counters_agree_with_the_drivers", true, &[&[]], || {
        let dev = Device::Cuda(0);
        let mut step = resnet_trainer(dev, 4);
        for _ in 0..2 {
            step().unwrap(); // warm-up: momentum buffers, gradients, the allocator's cache
        }
        smallgrad::cuda::synchronize(dev).unwrap();
        let (s0, d0) = (smallgrad::cuda::counters(dev).unwrap(), sim::counters().unwrap());
        step().unwrap();
        let (s1, d1) = (smallgrad::cuda::counters(dev).unwrap(), sim::counters().unwrap());
        let ours = |f: fn(&smallgrad::cuda::Counters) -> u64| f(&s1) - f(&s0);
        let theirs = |f: fn(&sim::SimCounters) -> u64| f(&d1) - f(&d0);
        assert_eq!(ours(|c| c.launches), theirs(|c| c.launches), "launches");
        assert_eq!(ours(|c| c.cublas_calls), theirs(|c| c.cublas_calls), "cuBLAS calls");
        assert_eq!(ours(|c| c.synchronizations), theirs(|c| c.syncs), "synchronisations");
        assert_eq!(
            theirs(|c| c.implicit_syncs),
            0,
            "a call that blocked without being asked to"
        );
        assert_eq!(ours(|c| c.h2d_copies), theirs(|c| c.h2d_copies), "H2D copies");
        assert_eq!(ours(|c| c.h2d_bytes), theirs(|c| c.h2d_bytes), "H2D bytes");
        assert_eq!(ours(|c| c.d2h_copies), theirs(|c| c.d2h_copies), "D2H copies");
        assert_eq!(ours(|c| c.d2h_bytes), theirs(|c| c.d2h_bytes), "D2H bytes");
        assert_eq!(ours(|c| c.d2d_copies), theirs(|c| c.d2d_copies), "D2D copies");
        assert_eq!(ours(|c| c.memsets), theirs(|c| c.memsets), "memsets");
        assert_eq!(ours(|c| c.device_allocs), theirs(|c| c.allocs), "allocations");
        assert_eq!(ours(|c| c.device_frees), theirs(|c| c.frees), "frees");
        assert_eq!(ours(|c| c.device_allocs), 0, "a warm step allocates nothing");
        println!(
            "one warm ResNet-20 step (batch 4, 12x12x1): launches={} cublas={} syncs={} h2d={} d2h={} d2d={} \
                 memsets={} allocs={}",
            ours(|c| c.launches),
            ours(|c| c.cublas_calls),
            ours(|c| c.synchronizations),
            ours(|c| c.h2d_copies),
            ours(|c| c.d2h_copies),
            ours(|c| c.d2d_copies),
            ours(|c| c.memsets),
            ours(|c| c.device_allocs)
        );
    });
    for o in &outs {
        if let Some(at) = o.find("one warm ResNet-20 step") {
            println!("{}", o[at..].lines().next().unwrap_or_default());
        }
    }
}

/// The simulator runs every thread of every block, once per schedule it compares.
#[test]
fn the_simulator_runs_every_thread_of_the_grid() {
    child_test(
        "the_simulator_runs_every_thread_of_the_grid",
        true,
        &[&[("CUDA_SIM_SCHEDULES", "3")]],
        || {
            let dev = Device::Cuda(0);
            let x = Tensor::<f32>::ones(&[1000], dev).unwrap();
            smallgrad::cuda::synchronize(dev).unwrap();
            let before = sim::counters().unwrap();
            let y = x.exp().unwrap(); // 1000 threads, in 4 blocks of 256
            smallgrad::cuda::synchronize(dev).unwrap();
            let after = sim::counters().unwrap();
            let schedules: u64 = std::env::var("CUDA_SIM_SCHEDULES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1)
                .max(1);
            assert_eq!(after.launches - before.launches, 1);
            assert_eq!(after.schedules_run - before.schedules_run, schedules);
            assert_eq!(after.threads_run - before.threads_run, 1024 * schedules);
            drop(y);
        },
    );
}

/// A warm training loop makes no cuMemAlloc call: the caching allocator serves every request.
/// In its own process, so that no other test allocates meanwhile.
#[test]
fn allocator_reuses_memory_across_steps() {
    // One schedule and no tracking: the op suite checks these kernels for races already.
    child_test(
        "allocator_reuses_memory_across_steps",
        false,
        &[&[("CUDA_SIM_SCHEDULES", "1"), ("CUDA_SIM_RACECHECK", "0")]],
        || {
            let dev = Device::Cuda(0);
            let mut step = resnet_trainer(dev, 8);
            for _ in 0..2 {
                step().unwrap();
            }
            let before = smallgrad::cuda::memory_stats(dev).unwrap();
            for _ in 0..20 {
                step().unwrap();
            }
            smallgrad::cuda::synchronize(dev).unwrap();
            let after = smallgrad::cuda::memory_stats(dev).unwrap();
            assert_eq!(after.device_allocs, before.device_allocs, "{before:?} -> {after:?}");
            assert!(
                after.bytes_in_use <= before.bytes_in_use + (1 << 20),
                "{before:?} -> {after:?}"
            );
        },
    );
}
