// Fibers: each GPU thread of a block runs on its own small stack and gives the worker thread
// back at __syncthreads (or when it finishes), so a block's threads can all stop at a barrier.
// On x86-64 the switch is a few instructions (callee-saved registers, MXCSR and the x87 control
// word); elsewhere it falls back to ucontext.
#pragma once

#include <cstddef>
#include <cstdint>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace sim {

struct FiberContext {
#if defined(__x86_64__)
    void* sp = nullptr;
#else
    ucontext_t uc;
#endif
};

// Saves the running context into `from` and resumes `to`.
void fiber_switch(FiberContext* from, FiberContext* to);

// Prepares `ctx` to run entry(arg) on [stack, stack + size) when first switched to. `entry` must
// never return: it switches away for the last time instead.
void fiber_init(FiberContext* ctx, void* stack, size_t size, void (*entry)(void*), void* arg);

}  // namespace sim
