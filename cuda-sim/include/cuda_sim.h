/* cuda-sim's own interface: counters and checks that no real driver has.
 *
 * The simulated libcuda.so.1 exports these next to the driver API. Programs that also run on a
 * real GPU must not link against them: look them up at run time (dlsym(RTLD_DEFAULT, "cuSim...")),
 * and treat a missing symbol as "not the simulator". smallgrad's tests do exactly that.
 *
 * Everything here is process-wide (all simulated devices together) and thread-safe.
 */
#ifndef CUDA_SIM_H
#define CUDA_SIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters since process start (or the last cuSimResetCounters). Field order is ABI: new
 * fields are only ever appended; `size` says how many bytes the simulator filled. */
typedef struct cuSimCounters {
    uint64_t size;               /* sizeof(cuSimCounters) of the simulator that filled it */
    uint64_t launches;           /* cuLaunchKernel calls accepted */
    uint64_t cublas_calls;       /* cuBLAS GEMM calls accepted (any precision, batched or not) */
    uint64_t syncs;              /* explicit waits: cuStreamSynchronize, cuCtxSynchronize, cuEventSynchronize */
    uint64_t implicit_syncs;     /* calls that blocked on queued work without being asked to:
                                    device-to-pageable copies, synchronous copies, cuMemFree */
    uint64_t h2d_copies, h2d_bytes;
    uint64_t d2h_copies, d2h_bytes;
    uint64_t d2d_copies, d2d_bytes;
    uint64_t memsets;
    uint64_t allocs;             /* successful cuMemAlloc calls */
    uint64_t frees;              /* successful cuMemFree calls */
    uint64_t live_allocs;        /* allocations not yet freed */
    uint64_t live_bytes;         /* their requested bytes */
    uint64_t peak_bytes;         /* the most live_bytes ever reached */
    uint64_t module_loads;
    uint64_t threads_run;        /* GPU threads executed (all schedules) */
    uint64_t schedules_run;      /* launches executed, counting each schedule of a race check */
    uint64_t findings;           /* races, bad accesses, barrier errors, misuse reports */
    uint64_t injected_faults;    /* calls that returned an injected error */
} cuSimCounters;

/* Fills *out (at most `size` bytes of it, which must be >= 8). Returns 0. */
int cuSimGetCounters(cuSimCounters *out, size_t size);

/* Sets every counter except live_allocs / live_bytes to zero, and peak_bytes to live_bytes. */
void cuSimResetCounters(void);

/* Launch checks for launches made by the CALLING thread from now on (captured at
 * cuLaunchKernel): how many schedules to run and compare (1 = no schedule comparison), and
 * whether to track every access for races (0/1). A negative value keeps the process default
 * (CUDA_SIM_SCHEDULES, CUDA_SIM_RACECHECK). */
void cuSimSetThreadChecks(int schedules, int racecheck);

/* The text of the most recent finding (race, bad access, barrier error, misuse), or "" if
 * none; copies at most len - 1 bytes and a NUL. Returns the full length. */
size_t cuSimLastFinding(char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* CUDA_SIM_H */
