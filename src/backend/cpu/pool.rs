//! A small cache of large host buffers, so that a training step reuses the memory of the last
//! step's activations instead of asking the operating system for it again.
//!
//! Why: glibc's `malloc` serves a request of a few MiB from fresh pages (above its mmap
//! threshold, or after trimming the top of the heap) and returns them on `free`, so every
//! large op output costs one page fault per 4 KiB on first touch (ResNet-20's stage-1
//! activations are 3.2 MB, 800 pages, at batch 64; four times that for inference at batch
//! 256). With glibc told never to trim or mmap (`MALLOC_TRIM_THRESHOLD_`,
//! `MALLOC_MMAP_THRESHOLD_`) the batch-256 inference ran ~13% faster; this pool gets that
//! (about 113 -> 100 ms) without touching process-wide allocator settings, and the training
//! step a few percent (within this machine's noise).
//!
//! What: when a tensor's host storage is dropped ([`give`], from `Storage`'s `Drop`), a buffer
//! of at least [`MIN_BYTES`] is kept, up to [`MAX_BYTES`] in all (the oldest go first); an op
//! allocating its output ([`uninit`], [`zeroed`]) takes the smallest kept buffer that fits and
//! is at most twice the size asked. (Why 64 MiB: the training step's peak RSS is 89 MiB
//! without the pool, 100 MiB with a 64 MiB cap and 103 MiB with 256 MiB, at the same speed.)
//! The contents of a reused buffer never leak: [`uninit`] hands out an empty `Vec` (its
//! callers write every element before setting the length) and [`zeroed`] fills. Nothing about the arithmetic changes, so results are bit-identical with
//! and without the pool.

use crate::dtype::Float;
use std::any::Any;
use std::sync::Mutex;

/// Buffers smaller than this go back to the allocator (malloc serves them from its heap).
pub(crate) const MIN_BYTES: usize = 512 << 10;
/// At most this many bytes are kept.
pub(crate) const MAX_BYTES: usize = 64 << 20;

/// The kept buffers of one element type, oldest first, and their total size in bytes.
struct Kept<T> {
    bufs: Vec<Vec<T>>,
    bytes: usize,
}

static F32: Mutex<Kept<f32>> = Mutex::new(Kept {
    bufs: Vec::new(),
    bytes: 0,
});
static F64: Mutex<Kept<f64>> = Mutex::new(Kept {
    bufs: Vec::new(),
    bytes: 0,
});

impl<T> Kept<T> {
    fn put(&mut self, mut v: Vec<T>) {
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if !(MIN_BYTES..=MAX_BYTES).contains(&bytes) {
            return;
        }
        while self.bytes + bytes > MAX_BYTES && !self.bufs.is_empty() {
            let old = self.bufs.remove(0);
            self.bytes -= old.capacity() * std::mem::size_of::<T>();
        }
        v.clear();
        self.bytes += bytes;
        self.bufs.push(v);
    }

    /// The smallest kept buffer with capacity in `len..=2 * len`, if any (emptied).
    fn get(&mut self, len: usize) -> Option<Vec<T>> {
        let fits = |c: usize| c >= len && c / 2 <= len;
        let (at, _) = self
            .bufs
            .iter()
            .enumerate()
            .filter(|(_, b)| fits(b.capacity()))
            .min_by_key(|(_, b)| b.capacity())?;
        let v = self.bufs.remove(at);
        self.bytes -= v.capacity() * std::mem::size_of::<T>();
        Some(v)
    }
}

/// Runs `f` on the kept buffers of `T` (f32 or f64: `Float` is sealed).
fn with_kept<T: Float, R>(f: impl FnOnce(&mut Kept<T>) -> R) -> R {
    fn locked<U>(m: &Mutex<Kept<U>>) -> std::sync::MutexGuard<'_, Kept<U>> {
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    if let Some(k) = (&F32 as &dyn Any).downcast_ref::<Mutex<Kept<T>>>() {
        return f(&mut locked(k));
    }
    match (&F64 as &dyn Any).downcast_ref::<Mutex<Kept<T>>>() {
        Some(k) => f(&mut locked(k)),
        None => unreachable!("Float is implemented only for f32 and f64"),
    }
}

/// Keeps `v`'s memory for reuse if it is large (called when host storage is dropped).
pub(crate) fn give<T: Float>(v: Vec<T>) {
    if v.capacity() * std::mem::size_of::<T>() >= MIN_BYTES {
        with_kept::<T, _>(|k| k.put(v));
    }
}

/// An empty `Vec` with room for `len` elements: a kept buffer when one fits, else a new one.
pub(crate) fn uninit<T: Float>(len: usize) -> Vec<T> {
    if len * std::mem::size_of::<T>() >= MIN_BYTES
        && let Some(v) = with_kept::<T, _>(|k| k.get(len))
    {
        return v;
    }
    Vec::with_capacity(len)
}

/// `len` zeros (a kept buffer, filled, when one fits).
pub(crate) fn zeroed<T: Float>(len: usize) -> Vec<T> {
    if len * std::mem::size_of::<T>() < MIN_BYTES {
        return vec![T::ZERO; len];
    }
    let mut v = uninit(len);
    v.resize(len, T::ZERO);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy, on a private instance (the global pools are shared with concurrent tests).
    #[test]
    fn keeps_large_buffers_returns_the_best_fit_and_caps_the_total() {
        let mut k = Kept::<f32> {
            bufs: Vec::new(),
            bytes: 0,
        };
        let len = MIN_BYTES / 4 * 3;
        let mut a = vec![7.0f32; len];
        a.truncate(5);
        let ptr = a.as_ptr();
        k.put(a);
        k.put(vec![1.0f32; 16]); // too small to keep
        assert_eq!((k.bufs.len(), k.bytes), (1, len * 4));
        assert!(
            k.get(len / 3).is_none(),
            "a buffer over twice the request is not handed out"
        );
        let b = k.get(len - 10).expect("fits");
        assert_eq!((b.as_ptr(), b.len(), k.bytes), (ptr, 0, 0), "handed out empty");
        // Best fit: of two that fit, the smaller.
        k.put(Vec::with_capacity(len));
        k.put(Vec::with_capacity(len + len / 2));
        assert_eq!(k.get(len).map(|v| v.capacity()), Some(len));
        // The total stays within MAX_BYTES (the oldest go first).
        let big = MAX_BYTES / 4 / 3 + 1;
        for _ in 0..4 {
            k.put(Vec::with_capacity(big));
        }
        assert!(
            k.bytes <= MAX_BYTES && k.bufs.len() == 2,
            "{} bytes in {} buffers",
            k.bytes,
            k.bufs.len()
        );
    }

    /// Through the global pool: whatever buffer comes back, `zeroed` is zeros and `uninit` is
    /// empty with the capacity asked for; f32 and f64 buffers never mix.
    #[test]
    fn reused_buffers_never_show_old_contents() {
        let len = MIN_BYTES / 4 + 3;
        for _ in 0..3 {
            give(vec![5.0f32; len]);
            give(vec![5.0f64; len / 2]);
            let z: Vec<f32> = zeroed(len);
            assert!(z.len() == len && z.iter().all(|&v| v == 0.0));
            let u: Vec<f64> = uninit(len / 2);
            assert!(u.is_empty() && u.capacity() >= len / 2);
            give(z);
            give(u);
        }
    }
}
