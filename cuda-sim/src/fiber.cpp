#include "fiber.h"

#include <cstring>

namespace sim {

#if defined(__x86_64__)

// void sim_fiber_swap(void** save_sp, void* load_sp): pushes the callee-saved registers and the
// floating-point control state, stores rsp, loads the other stack and pops its state.
asm(R"(
    .text
    .globl sim_fiber_swap
    .hidden sim_fiber_swap
    .type sim_fiber_swap, @function
sim_fiber_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size sim_fiber_swap, .-sim_fiber_swap

    .globl sim_fiber_start
    .hidden sim_fiber_start
    .type sim_fiber_start, @function
sim_fiber_start:
    movq %r12, %rdi
    callq *%r13
    ud2
    .size sim_fiber_start, .-sim_fiber_start
)");

extern "C" void sim_fiber_swap(void** save_sp, void* load_sp);
extern "C" void sim_fiber_start();

void fiber_switch(FiberContext* from, FiberContext* to) { sim_fiber_swap(&from->sp, to->sp); }

void fiber_init(FiberContext* ctx, void* stack, size_t size, void (*entry)(void*), void* arg) {
    // The frame sim_fiber_swap pops: [fp state][r15][r14][r13][r12][rbx][rbp][return address],
    // so that after `ret` into sim_fiber_start rsp is the 16-byte aligned top of the stack.
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
    uint64_t* f = reinterpret_cast<uint64_t*>(top - 64);
    uint32_t fp[2];
    asm volatile("stmxcsr %0" : "=m"(fp[0]));
    asm volatile("fnstcw %0" : "=m"(fp[1]));
    std::memcpy(&f[0], fp, 8);
    f[1] = 0;                                         // r15
    f[2] = 0;                                         // r14
    f[3] = reinterpret_cast<uint64_t>(entry);         // r13: the function
    f[4] = reinterpret_cast<uint64_t>(arg);           // r12: its argument
    f[5] = 0;                                         // rbx
    f[6] = 0;                                         // rbp
    f[7] = reinterpret_cast<uint64_t>(&sim_fiber_start);
    ctx->sp = f;
}

#else

void fiber_switch(FiberContext* from, FiberContext* to) { swapcontext(&from->uc, &to->uc); }

void fiber_init(FiberContext* ctx, void* stack, size_t size, void (*entry)(void*), void* arg) {
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = stack;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = nullptr;
    // makecontext passes int arguments: split the pointer in two.
    auto p = reinterpret_cast<uintptr_t>(arg);
    using Fn = void (*)();
    static void (*target)(void*) = nullptr;
    target = entry;
    makecontext(
        &ctx->uc,
        reinterpret_cast<Fn>(+[](unsigned lo, unsigned hi) {
            target(reinterpret_cast<void*>((uintptr_t(hi) << 32) | lo));
        }),
        2, unsigned(p & 0xffffffffu), unsigned(p >> 32));
}

#endif

}  // namespace sim
