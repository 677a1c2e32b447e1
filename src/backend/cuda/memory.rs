//! Device memory: [`DevBuf`] (an owned, typed device allocation) and the caching allocator
//! behind it. Freed buffers go back to a free list of their size class, and the next request of
//! that class reuses one, so a training loop that repeats the same shapes makes no `cuMemAlloc`
//! call after its first step. Reuse is safe because all of a device's work runs on one stream:
//! a kernel that will write a reused buffer is queued after every kernel that read it before.
//!
//! Dropping a buffer touches no driver state (it goes to a free list), so it neither waits nor
//! changes the dropping thread's current context. Memory goes back to the driver only when an
//! allocation fails (the cache is freed and the allocation retried), after the stream has been
//! synchronised.
//!
//! `SMALLGRAD_CUDA_NO_CACHING=1` turns the cache off, as `PYTORCH_NO_CUDA_MEMORY_CACHING=1` does:
//! one `cuMemAlloc` of exactly the requested bytes per buffer, freed (after a synchronisation)
//! when it drops. Slow, and for checking: every byte past a tensor's end is then outside any
//! allocation, where the simulator's bounds checks (or compute-sanitizer's) see it.

use super::Gpu;
use crate::{Error, Result};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Mutex;

/// An owned device allocation of `len` elements of `T` on one GPU, returned to the caching
/// allocator when dropped. An empty buffer has no allocation (address 0).
pub(crate) struct DevBuf<T: Copy> {
    ptr: u64,
    len: usize,
    /// Bytes held: the size class (caching), the exact size (no caching), 0 when empty.
    bytes: usize,
    gpu: &'static Gpu,
    _t: PhantomData<T>,
}

// SAFETY: a device pointer and a reference to the process-wide `Gpu`; every use goes through
// the device's stream with its context bound first.
unsafe impl<T: Copy> Send for DevBuf<T> {}
unsafe impl<T: Copy> Sync for DevBuf<T> {}

impl<T: Copy> DevBuf<T> {
    /// The device address (a kernel's pointer argument).
    pub(crate) fn ptr(&self) -> u64 {
        self.ptr
    }
    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    /// The GPU holding it.
    pub(crate) fn gpu(&self) -> &'static Gpu {
        self.gpu
    }
}

impl<T: Copy> Drop for DevBuf<T> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.gpu.pool.release(self.gpu, self.bytes, self.ptr);
        }
    }
}

#[derive(Default)]
struct PoolInner {
    free: HashMap<usize, Vec<u64>>,
    in_use: u64,
    cached: u64,
    peak: u64,
}

/// The size-bucketed caching allocator of one device.
pub(crate) struct Pool {
    caching: bool,
    inner: Mutex<PoolInner>,
}

/// The size class of a request: at least 512 bytes, else rounded up to one of 8 steps per power
/// of two (at most 12.5% slack), so that slightly different sizes share free lists.
fn size_class(bytes: usize) -> Option<usize> {
    if bytes <= 512 {
        return Some(512);
    }
    let top = usize::BITS - 1 - bytes.leading_zeros(); // 2^top <= bytes
    let step = 1usize << (top - 3);
    bytes.checked_add(step - 1).map(|b| b / step * step)
}

impl Pool {
    pub(crate) fn new(caching: bool) -> Self {
        Pool {
            caching,
            inner: Mutex::new(PoolInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, gpu: &Gpu, bytes: usize, ptr: u64) {
        if !self.caching {
            self.lock().in_use -= bytes as u64;
            // SAFETY: a block this pool allocated, dropped by its only owner. An error (the
            // context faulted) leaves nothing to do: Drop cannot report it, and the next call
            // on the device returns it.
            let _ = unsafe { gpu.drv.mem_free(ptr) };
            return;
        }
        let mut p = self.lock();
        p.in_use -= bytes as u64;
        p.cached += bytes as u64;
        p.free.entry(bytes).or_default().push(ptr);
    }

    /// Frees every cached block (before retrying an allocation that ran out of memory), once
    /// the stream has drained: a block in a free list may still be read by queued kernels.
    fn trim(&self, gpu: &Gpu) -> Result<()> {
        gpu.synchronize("freeing the allocator's cache")?;
        let blocks: Vec<(usize, Vec<u64>)> = self.lock().free.drain().collect();
        for (class, ptrs) in blocks {
            for ptr in ptrs {
                self.lock().cached -= class as u64;
                // SAFETY: a block this pool allocated and nobody holds; the stream is idle.
                unsafe { gpu.drv.mem_free(ptr) }?;
            }
        }
        Ok(())
    }

    pub(crate) fn stats(&self, c: &super::driver::CallCounters) -> super::public::MemoryStats {
        use std::sync::atomic::Ordering::Relaxed;
        let p = self.lock();
        super::public::MemoryStats {
            device_allocs: c.allocs.load(Relaxed),
            device_frees: c.frees.load(Relaxed),
            bytes_in_use: p.in_use,
            bytes_cached: p.cached,
            peak_bytes_in_use: p.peak,
        }
    }
}

impl Gpu {
    /// `len` uninitialised elements of `T`.
    pub(crate) fn alloc<T: Copy>(&'static self, len: usize) -> Result<DevBuf<T>> {
        let overflow = || Error::OutOfMemory {
            msg: format!(
                "cannot allocate {len} elements on cuda:{}: the size overflows",
                self.ordinal
            ),
        };
        let exact = len.checked_mul(size_of::<T>()).ok_or_else(overflow)?;
        if exact == 0 {
            return Ok(DevBuf {
                ptr: 0,
                len,
                bytes: 0,
                gpu: self,
                _t: PhantomData,
            });
        }
        let bytes = if self.pool.caching {
            size_class(exact).ok_or_else(overflow)?
        } else {
            exact
        };
        let reused = if self.pool.caching {
            let mut p = self.pool.lock();
            let hit = p.free.get_mut(&bytes).and_then(|v| v.pop());
            if hit.is_some() {
                p.cached -= bytes as u64;
            }
            hit
        } else {
            None
        };
        let ptr = match reused {
            Some(ptr) => ptr,
            None => match self.drv.mem_alloc(bytes) {
                Err(Error::OutOfMemory { .. }) if self.pool.caching => {
                    self.pool.trim(self)?;
                    self.drv.mem_alloc(bytes)
                }
                other => other,
            }
            .map_err(|e| {
                e.context(format!(
                    "cuda:{}, {len} elements of {} bytes",
                    self.ordinal,
                    size_of::<T>()
                ))
            })?,
        };
        let mut p = self.pool.lock();
        p.in_use += bytes as u64;
        p.peak = p.peak.max(p.in_use);
        Ok(DevBuf {
            ptr,
            len,
            bytes,
            gpu: self,
            _t: PhantomData,
        })
    }

    /// `len` elements, all bits zero (0.0 for floats, 0 for indices).
    pub(crate) fn zeros<T: Copy>(&'static self, len: usize) -> Result<DevBuf<T>> {
        let b = self.alloc::<T>(len)?;
        if len > 0 {
            // SAFETY: writes within the allocation.
            unsafe { self.drv.memset0(b.ptr, len * size_of::<T>()) }?;
        }
        Ok(b)
    }

    /// A device copy of `data`.
    pub(crate) fn upload<T: Copy>(&'static self, data: &[T]) -> Result<DevBuf<T>> {
        let b = self.alloc::<T>(data.len())?;
        self.write(&b, data)?;
        Ok(b)
    }

    /// Overwrites `dst` (same length) with `data`. `data` may be dropped on return: small
    /// copies are staged in pinned memory and finish in stream order, big ones are waited for.
    pub(crate) fn write<T: Copy>(&'static self, dst: &DevBuf<T>, data: &[T]) -> Result<()> {
        assert_eq!(dst.len, data.len(), "upload length");
        if data.is_empty() {
            return Ok(());
        }
        // SAFETY: `data` is live and `dst` holds its size; `htod` is done reading `data` on return.
        unsafe { self.drv.htod(dst.ptr, data.as_ptr().cast(), size_of_val(data)) }
    }

    /// A host copy of `src` (waits for the work queued before it).
    pub(crate) fn download<T: Copy + Default>(&'static self, src: &DevBuf<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        out.try_reserve_exact(src.len).map_err(|_| Error::OutOfMemory {
            msg: format!("cannot allocate {} host elements for a download", src.len),
        })?;
        out.resize(src.len, T::default());
        if src.len == 0 {
            return Ok(out);
        }
        // SAFETY: `out` holds `src.len` elements; the copy is complete on return.
        unsafe {
            self.drv
                .dtoh(out.as_mut_ptr().cast(), src.ptr, src.len * size_of::<T>())
        }?;
        Ok(out)
    }

    /// A new device copy of `src`.
    pub(crate) fn duplicate<T: Copy>(&'static self, src: &DevBuf<T>) -> Result<DevBuf<T>> {
        let b = self.alloc::<T>(src.len)?;
        if src.len > 0 {
            // SAFETY: both allocations hold `len` elements.
            unsafe { self.drv.dtod(b.ptr, src.ptr, src.len * size_of::<T>()) }?;
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_bound_the_slack_and_cover_the_request() {
        assert_eq!(size_class(1), Some(512));
        assert_eq!(size_class(512), Some(512));
        for bytes in [513usize, 1000, 4096, 4097, 123_457, 1 << 30, (1 << 30) + 1] {
            let c = size_class(bytes).unwrap();
            assert!(c >= bytes && (c - bytes) * 8 <= bytes, "{bytes} -> {c}");
            // a class maps to itself, so a freed block serves the same class again
            assert_eq!(size_class(c), Some(c));
        }
        assert_eq!(size_class(usize::MAX), None);
    }
}
