//! The simulator's own interface (cuda-sim/include/cuda_sim.h), looked up at run time so that the
//! same test binary also runs against a real driver, where [`counters`] is `None`; and a way to
//! run a test's body in a child process with its own environment (fault injection and the
//! simulator's settings are read when a process starts).

use std::ffi::{c_char, c_int, c_void};
use std::process::Command;

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// `cuSimCounters`, field for field.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SimCounters {
    pub size: u64,
    pub launches: u64,
    pub cublas_calls: u64,
    pub syncs: u64,
    pub implicit_syncs: u64,
    pub h2d_copies: u64,
    pub h2d_bytes: u64,
    pub d2h_copies: u64,
    pub d2h_bytes: u64,
    pub d2d_copies: u64,
    pub d2d_bytes: u64,
    pub memsets: u64,
    pub allocs: u64,
    pub frees: u64,
    pub live_allocs: u64,
    pub live_bytes: u64,
    pub peak_bytes: u64,
    pub module_loads: u64,
    pub threads_run: u64,
    pub schedules_run: u64,
    pub findings: u64,
    pub injected_faults: u64,
}

fn symbol(name: &[u8]) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT (null on glibc) and a NUL-terminated name.
    unsafe { dlsym(std::ptr::null_mut(), name.as_ptr().cast()) }
}

/// The simulator's counters, or `None` when the driver is not cuda-sim.
pub fn counters() -> Option<SimCounters> {
    let f = symbol(b"cuSimGetCounters\0");
    if f.is_null() {
        return None;
    }
    // SAFETY: cuSimGetCounters(cuSimCounters*, size_t) -> int.
    let f: unsafe extern "C" fn(*mut SimCounters, usize) -> c_int = unsafe { std::mem::transmute(f) };
    let mut c = SimCounters::default();
    // SAFETY: a buffer of the size passed.
    unsafe { f(&mut c, size_of::<SimCounters>()) };
    Some(c)
}

/// Whether the CUDA driver of this process is the simulator.
pub fn is_simulator() -> bool {
    !symbol(b"cuSimGetCounters\0").is_null()
}

/// The simulator's last finding ("" if none or not the simulator).
pub fn last_finding() -> String {
    let f = symbol(b"cuSimLastFinding\0");
    if f.is_null() {
        return String::new();
    }
    // SAFETY: cuSimLastFinding(char*, size_t) -> size_t.
    let f: unsafe extern "C" fn(*mut c_char, usize) -> usize = unsafe { std::mem::transmute(f) };
    let mut buf = vec![0u8; 4096];
    // SAFETY: a buffer of the size passed.
    unsafe { f(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The simulator's checks for launches made by this thread (schedules to compare; access
/// tracking on or off); negative keeps the process default. No-op on a real driver.
pub fn set_thread_checks(schedules: i32, racecheck: i32) {
    let f = symbol(b"cuSimSetThreadChecks\0");
    if !f.is_null() {
        // SAFETY: cuSimSetThreadChecks(int, int).
        let f: unsafe extern "C" fn(c_int, c_int) = unsafe { std::mem::transmute(f) };
        // SAFETY: plain values.
        unsafe { f(schedules, racecheck) };
    }
}

const CHILD: &str = "SMALLGRAD_CHILD_TEST";
/// What a child prints when its body ran to the end.
pub const CHILD_DONE: &str = "child body done";

/// Whether this process is the child started by [`run_child`] for `test` (its name, without the
/// module path).
pub fn is_child(test: &str) -> bool {
    std::env::var(CHILD).is_ok_and(|v| v.rsplit("::").next() == Some(test))
}

/// Runs the test `test` (its full path in this binary, e.g. `driver::some_test`) again in a
/// child process with `env` added, and returns its output; panics unless it succeeded and its
/// body printed [`CHILD_DONE`].
pub fn run_child(test: &str, env: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, test)
        .envs(env.iter().copied())
        .output()
        .expect("the test binary runs again");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child run of {test} with {env:?} failed:\n{text}");
    assert!(
        text.contains(CHILD_DONE),
        "child run of {test} did not finish its body:\n{text}"
    );
    text
}
