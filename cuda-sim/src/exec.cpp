// The grid executor: runs one kernel launch on the stream's worker thread with the semantics of
// a GPU, and checks it.
//
// Threads. Every block runs with blockDim threads, each a fiber (fiber.h). A barrier phase runs
// every live thread until it reaches __syncthreads or returns; then the phase ends. If some
// threads wait at a barrier while others have returned, or wait at different barriers, that is
// a finding (CUDA leaves it undefined). Blocks run one after another.
//
// Memory. The kernels are compiled with gcc's -fsanitize=thread instrumentation, so every load
// and store of global or shared memory calls __tsan_read<N> / __tsan_write<N> first; those are
// implemented here. Each access must lie inside a live device allocation of the launch's device
// (exactly: the requested bytes, not the page), on the thread's own stack, or in the block's
// shared memory. Anything else stops the launch with CUDA_ERROR_ILLEGAL_ADDRESS and a message
// naming the kernel, the thread, the address and what lies there.
//
// Races, two ways:
// - schedules (CUDA_SIM_SCHEDULES=N, N >= 2): the launch runs N times, with the threads of each
//   barrier phase and the blocks in forward, reverse and then seeded-shuffled orders; memory
//   the launch writes is snapshotted on first write and restored between runs, and the results
//   are compared bit for bit. A difference is a finding naming the kernel and the first
//   differing byte.
// - tracking (CUDA_SIM_RACECHECK=1): every access of the first run is recorded per 4 bytes;
//   two accesses by different threads, at least one a write, are a race unless both threads are
//   in the same block and a barrier separates them. This catches what no serial order shows
//   (two threads adding into one value give the same bits either way).
#include <dlfcn.h>
#include <pthread.h>
#include <link.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <utility>

#include "fiber.h"
#include "sim.h"

extern "C" void* __tls_get_addr(void*);

namespace sim {

namespace {

constexpr size_t STACK_SIZE = 128 << 10;
constexpr int HOT = 8;

struct Fiber {
    FiberContext ctx;
    char* stack = nullptr;
    enum State { NEW, READY, BARRIER, DONE, FAULTED } state = NEW;
    dim3_ tid{0, 0, 0};
    uint32_t linear = 0;
    const char* bar_file = nullptr;
    int bar_line = 0;
};

// Stacks of one worker thread, reused across blocks and launches.
struct StackPool {
    std::vector<char*> free_list;
    ~StackPool() {
        for (char* s : free_list) munmap(s - 4096, STACK_SIZE + 4096);
    }
    char* get() {
        if (!free_list.empty()) {
            char* s = free_list.back();
            free_list.pop_back();
            return s;
        }
        // a guard page below each stack: an overflow faults instead of corrupting its neighbour
        void* m = mmap(nullptr, STACK_SIZE + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (m == MAP_FAILED) return nullptr;
        mprotect(m, 4096, PROT_NONE);
        return static_cast<char*>(m) + 4096;
    }
    void put(char* s) {
        if (s) free_list.push_back(s);
    }
};

enum class Fault { NONE, BAD_ACCESS, BARRIER_MISMATCH, NO_PTX_BARRIER, STACK };

struct Exec {
    LaunchSpec* spec = nullptr;
    Context* ctx = nullptr;
    const HostKernel* host = nullptr;
    const char* name = "";
    std::vector<void*> args;
    dim3_ grid{1, 1, 1}, block{1, 1, 1};
    uint32_t tpb = 1;
    uint64_t nblocks = 1;
    int schedule = 0;

    Fiber* cur = nullptr;
    dim3_ block_idx{0, 0, 0};
    uint64_t block_linear = 0;
    uint32_t phase = 0;
    FiberContext sched;
    uintptr_t stack_lo = 0, stack_len = 0;
    uintptr_t shared_lo = 0, shared_len = 0;

    struct Hot {
        uintptr_t lo = 0, len = 0;
        Allocation* a = nullptr;
    } hot[HOT];
    int hot_next = 0;
    std::unordered_map<Allocation*, std::shared_ptr<Allocation>> held;  // alive while the launch runs

    bool track = false;
    uint32_t epoch = 0, shared_epoch = 0;
    std::vector<Shadow> shared_shadow;
    bool race_found = false;

    bool cow = false;
    std::vector<std::pair<std::shared_ptr<Allocation>, std::vector<uint8_t>>> snapshots;

    Fault fault = Fault::NONE;
    std::string finding;
    std::vector<uint32_t> order;  // scratch: the threads of one phase, in schedule order
    uint64_t threads_done = 0;
    unsigned access_size = 4;  // of the access being checked (for messages)
};

}  // namespace
}  // namespace sim

// The running GPU thread's coordinates, which the kernels read (cuda_sim_device.h).
struct cuda_sim_state_t {
    sim::dim3_ thread_idx, block_idx, block_dim, grid_dim;
};
extern "C" {
__attribute__((visibility("default"), tls_model("initial-exec"))) __thread cuda_sim_state_t cuda_sim_state;
}

namespace sim {
namespace {

// Read on every instrumented access: initial-exec TLS (the driver is loaded at start-up).
__attribute__((tls_model("initial-exec"))) thread_local Exec* tls_exec = nullptr;
thread_local StackPool* tls_stacks = nullptr;
thread_local int t_schedules = -1, t_racecheck = -1;
std::atomic<uint32_t> g_epoch{0};
std::atomic<uint64_t> g_launch_ids{0};

std::string coords(const dim3_& v) { return strprintf("(%u,%u,%u)", v.x, v.y, v.z); }

dim3_ unflatten(uint64_t i, const dim3_& d) {
    return {static_cast<unsigned>(i % d.x), static_cast<unsigned>((i / d.x) % d.y),
            static_cast<unsigned>(i / (uint64_t(d.x) * d.y))};
}

// "thread (t) of block (b)" for a global thread id + 1.
std::string who(const Exec& e, uint32_t gid1) {
    uint64_t g = gid1 - 1;
    return strprintf("thread %s of block %s", coords(unflatten(g % e.tpb, e.block)).c_str(),
                     coords(unflatten(g / e.tpb, e.grid)).c_str());
}

const char* schedule_name(int s) {
    switch (s) {
        case 0: return "forward";
        case 1: return "reverse";
        default: return "shuffled";
    }
}

// Thrown out of a GPU thread that must stop (a bad access, a barrier its PTX lacks): unwinds the
// kernel's frames to fiber_main (or run_block, for threads run directly), destructors and all.
struct KernelAbort {};

[[noreturn]] void abort_thread(Exec& e) {
    e.cur->state = Fiber::FAULTED;
    throw KernelAbort{};
}

[[noreturn]] void bad_access(Exec& e, uintptr_t addr, unsigned size, bool write, const std::string& what) {
    e.fault = Fault::BAD_ACCESS;
    e.finding = strprintf("kernel %s: %s %s %u bytes at 0x%llx: %s (CUDA_ERROR_ILLEGAL_ADDRESS)", e.name,
                          who(e, e.block_linear * e.tpb + e.cur->linear + 1).c_str(), write ? "writes" : "reads",
                          size, (unsigned long long)addr, what.c_str());
    abort_thread(e);
}

void race(Exec& e, uintptr_t addr, bool write, bool shared, uint32_t other, bool other_wrote) {
    counters.findings++;
    if (e.race_found) return;  // the first race of a launch is reported; the launch then fails
    e.race_found = true;
    uint32_t me = static_cast<uint32_t>(e.block_linear * e.tpb + e.cur->linear + 1);
    std::string where;
    if (shared) {
        where = shared_variable(e.host, addr - e.shared_lo, e.access_size);
        if (where.empty()) where = strprintf("shared memory byte %llu", (unsigned long long)(addr - e.shared_lo));
        else where = "shared " + where;
    } else {
        where = describe_address(addr, 1);
    }
    e.finding = strprintf(
        "race in kernel %s: %s %s %s, which %s %s in the same launch with no barrier between them "
        "(barrier phase %u)",
        e.name, who(e, me).c_str(), write ? "writes" : "reads", where.c_str(), who(e, other).c_str(),
        other_wrote ? "wrote" : "read", e.phase);
}

// Same block and an earlier barrier phase: ordered by a barrier.
inline bool ordered(const Exec& e, uint32_t tid1, uint32_t phase) {
    return (tid1 - 1) / e.tpb == e.block_linear && phase < e.phase;
}

inline void track_one(Exec& e, Shadow& s, uint32_t epoch, uintptr_t addr, bool write, bool shared) {
    uint32_t me = static_cast<uint32_t>(e.block_linear * e.tpb + e.cur->linear + 1);
    uint32_t blk = static_cast<uint32_t>(e.block_linear);
    if (s.epoch != epoch) {
        s = Shadow{epoch, write ? me : 0, e.phase, write ? 0 : me, e.phase, 0, 0, 0, 0};
        return;
    }
    if (s.w_tid && s.w_tid != me && !ordered(e, s.w_tid, s.w_phase)) race(e, addr, write, shared, s.w_tid, true);
    if (write) {
        if (s.r_tid && s.r_tid != me && !ordered(e, s.r_tid, s.r_phase)) race(e, addr, true, shared, s.r_tid, false);
        if ((s.o_flags & 1) && ((s.o_flags & 2) || s.o_block != blk || s.o_phase >= e.phase))
            race(e, addr, true, shared, s.o_tid, false);
        s.w_tid = me;
        s.w_phase = e.phase;
    } else if (s.r_tid == me) {
        s.r_phase = e.phase;
    } else {
        if (s.r_tid) {  // fold the previous reader into the summary of earlier ones
            uint32_t rb = (s.r_tid - 1) / e.tpb;
            if (!(s.o_flags & 1)) {
                s.o_flags = 1;
                s.o_tid = s.r_tid;
                s.o_block = rb;
                s.o_phase = s.r_phase;
            } else {
                if (s.o_block != rb) s.o_flags |= 2;
                s.o_phase = std::max(s.o_phase, s.r_phase);
            }
        }
        s.r_tid = me;
        s.r_phase = e.phase;
    }
}

void snapshot(Exec& e, Allocation* a) {
    a->cow_launch = e.spec->id;
    std::shared_ptr<Allocation> keep = e.held[a];
    auto* p = reinterpret_cast<const uint8_t*>(a->base);
    e.snapshots.emplace_back(keep, std::vector<uint8_t>(p, p + a->size));
}

inline void device_access(Exec& e, Allocation* a, uintptr_t addr, unsigned size, bool write) {
    if (addr + size > a->base + a->size)
        bad_access(e, addr, size, write, describe_address(addr, size));
    if (a->freed.load(std::memory_order_relaxed))
        bad_access(e, addr, size, write, describe_address(addr, size));
    if (write && e.cow && a->cow_launch != e.spec->id) snapshot(e, a);
    if (e.track) {
        if (!a->shadow) a->shadow.reset(new Shadow[(a->size + 3) / 4]());
        for (uintptr_t g = (addr - a->base) / 4; g <= (addr + size - 1 - a->base) / 4; ++g)
            track_one(e, a->shadow[g], e.epoch, addr, write, false);
    }
}

void slow_access(Exec& e, uintptr_t addr, unsigned size, bool write) {
    auto a = find_live(addr, 1);
    if (!a) bad_access(e, addr, size, write, describe_address(addr, size));
    if (a->ctx->device != e.ctx->device)
        bad_access(e, addr, size, write,
                   strprintf("%s, which belongs to device %d (no peer access in the simulator)",
                             describe_address(addr, size).c_str(), a->ctx->device->ordinal));
    Allocation* raw = a.get();
    e.held.emplace(raw, std::move(a));
    Exec::Hot& h = e.hot[e.hot_next];
    e.hot_next = (e.hot_next + 1) % HOT;
    h.lo = raw->base;
    h.len = raw->size;
    h.a = raw;
    device_access(e, raw, addr, size, write);
}

inline void access(void* p, unsigned size, bool write) {
    Exec* e = tls_exec;
    if (!e || !e->cur) return;  // not inside a kernel (library initialisation, the host's own code)
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (a - e->stack_lo < e->stack_len) return;  // the thread's own stack: locals, by-value arguments
    if (a - reinterpret_cast<uintptr_t>(&cuda_sim_state) < sizeof cuda_sim_state) return;  // threadIdx & co
    for (auto& h : e->hot) {
        if (a - h.lo < h.len) {
            device_access(*e, h.a, a, size, write);
            return;
        }
    }
    if (a - e->shared_lo < e->shared_len) {
        if (a + size > e->shared_lo + e->shared_len)
            bad_access(*e, a, size, write, "past the end of the block's shared memory");
        e->access_size = size;
        if (e->track)
            for (uintptr_t g = (a - e->shared_lo) / 4; g <= (a + size - 1 - e->shared_lo) / 4; ++g)
                track_one(*e, e->shared_shadow[g], e->shared_epoch, a, write, true);
        return;
    }
    slow_access(*e, a, size, write);
}

void fiber_main(void* p) {
    Exec* e = tls_exec;
    Fiber* f = static_cast<Fiber*>(p);
    try {
        e->host->thunk(e->host->fn, e->args.data());
        f->state = Fiber::DONE;
    } catch (KernelAbort&) {
        f->state = Fiber::FAULTED;
    }
    fiber_switch(&f->ctx, &e->sched);
    __builtin_unreachable();
}

// The worker thread's own stack (threads of barrier-free kernels run on it directly).
void worker_stack(uintptr_t* lo, uintptr_t* len) {
    static thread_local uintptr_t base = 0, size = 0;
    if (!size) {
        pthread_attr_t attr;
        void* addr = nullptr;
        size_t sz = 0;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
            pthread_attr_getstack(&attr, &addr, &sz);
            pthread_attr_destroy(&attr);
        }
        base = reinterpret_cast<uintptr_t>(addr);
        size = sz;
    }
    *lo = base;
    *len = size;
}

// A kernel without barriers (its PTX has no bar.sync): each thread runs to completion on the
// worker's stack, in the schedule's order. No fibers needed: nothing can suspend a thread.
bool run_block_direct(Exec& e, std::vector<Fiber>& fibers, std::vector<uint32_t>& order) {
    worker_stack(&e.stack_lo, &e.stack_len);
    for (uint32_t t : order) {
        Fiber& f = fibers[t];
        e.cur = &f;
        cuda_sim_state.thread_idx = f.tid;
        try {
            e.host->thunk(e.host->fn, e.args.data());
            f.state = Fiber::DONE;
        } catch (KernelAbort&) {
            f.state = Fiber::FAULTED;
        }
        e.cur = nullptr;
        e.threads_done += f.state == Fiber::DONE;
        if (e.fault != Fault::NONE) return false;
    }
    return true;
}

// The worker thread's TLS block of the kernel library: the kernels' __shared__ statics.
void shared_range(const HostKernel* k, uintptr_t* lo, uintptr_t* len) {
    *lo = 0;
    *len = 0;
    if (k->tls_module <= 0) return;
    struct {
        unsigned long module, offset;
    } ti{static_cast<unsigned long>(k->tls_module), 0};
    *lo = reinterpret_cast<uintptr_t>(__tls_get_addr(&ti));
    *len = k->tls_size;
}

// Runs one block; false when the launch must stop (e.finding says why).
bool run_block(Exec& e, uint64_t b, std::vector<Fiber>& fibers, std::mt19937_64& rng) {
    e.block_linear = b;
    e.block_idx = unflatten(b, e.grid);
    e.phase = 0;
    e.shared_epoch = g_epoch.fetch_add(1) + 1;  // shared memory is the block's own
    if (e.spec->fn->ptx.static_shared > 0 && e.shared_len > 0)
        std::memset(reinterpret_cast<void*>(e.shared_lo), 0xFF, e.shared_len);  // garbage, as a GPU's
    cuda_sim_state.block_idx = e.block_idx;
    for (auto& f : fibers) f.state = Fiber::NEW;
    std::vector<uint32_t>& order = e.order;
    order.resize(e.tpb);
    for (;;) {
        for (uint32_t t = 0; t < e.tpb; ++t) order[t] = t;
        if (e.schedule == 1) std::reverse(order.begin(), order.end());
        if (e.schedule >= 2) std::shuffle(order.begin(), order.end(), rng);
        if (!e.spec->fn->ptx.barrier) return run_block_direct(e, fibers, order);
        for (uint32_t t : order) {
            Fiber& f = fibers[t];
            if (f.state == Fiber::NEW) {
                f.stack = tls_stacks->get();
                if (!f.stack) {
                    e.fault = Fault::STACK;
                    e.finding = "cuda-sim: no memory for a GPU thread's stack";
                    return false;
                }
                fiber_init(&f.ctx, f.stack, STACK_SIZE, &fiber_main, &f);
                f.state = Fiber::READY;
            }
            if (f.state != Fiber::READY) continue;
            e.cur = &f;
            cuda_sim_state.thread_idx = f.tid;
            e.stack_lo = reinterpret_cast<uintptr_t>(f.stack);
            e.stack_len = STACK_SIZE;
            fiber_switch(&e.sched, &f.ctx);
            e.cur = nullptr;
            e.threads_done += f.state == Fiber::DONE;
            if (f.state == Fiber::DONE || f.state == Fiber::FAULTED) {
                tls_stacks->put(f.stack);
                f.stack = nullptr;
            }
            if (e.fault != Fault::NONE) {
                for (auto& g : fibers) tls_stacks->put(std::exchange(g.stack, nullptr));
                return false;
            }
        }
        uint32_t waiting = 0, done = 0;
        const Fiber* first = nullptr;
        for (auto& f : fibers) {
            if (f.state == Fiber::BARRIER) {
                ++waiting;
                if (!first) first = &f;
            } else {
                ++done;
            }
        }
        if (waiting == 0) return true;
        auto site = [](const Fiber& f) { return strprintf("%s:%d", f.bar_file, f.bar_line); };
        for (auto& f : fibers) {
            std::string why;
            if (f.state == Fiber::DONE)
                why = strprintf("thread %s returned while %u threads wait at __syncthreads() (%s)",
                                coords(f.tid).c_str(), waiting, site(*first).c_str());
            else if (f.bar_line != first->bar_line || std::strcmp(f.bar_file, first->bar_file) != 0)
                why = strprintf("thread %s waits at __syncthreads() %s while thread %s waits at %s",
                                coords(f.tid).c_str(), site(f).c_str(), coords(first->tid).c_str(),
                                site(*first).c_str());
            if (!why.empty()) {
                e.fault = Fault::BARRIER_MISMATCH;
                e.finding = strprintf("kernel %s, block %s, barrier phase %u: %s (a barrier must be reached by every "
                                      "thread of the block)",
                                      e.name, coords(e.block_idx).c_str(), e.phase, why.c_str());
                for (auto& g : fibers) tls_stacks->put(std::exchange(g.stack, nullptr));
                return false;
            }
        }
        (void)done;
        for (auto& f : fibers) f.state = Fiber::READY;
        ++e.phase;
    }
}

// First differing byte of two buffers, or -1.
long long first_difference(const uint8_t* a, const uint8_t* b, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (a[i] != b[i]) return static_cast<long long>(i);
    return -1;
}

}  // namespace

int thread_schedules() { return t_schedules >= 1 ? t_schedules : cfg.schedules; }
bool thread_racecheck() { return t_racecheck >= 0 ? t_racecheck != 0 : cfg.racecheck; }

int run_grid(LaunchSpec& spec, Context* ctx, std::string* msg) {
    if (!tls_stacks) tls_stacks = new StackPool();  // one per worker thread, for its life
    Exec e;
    e.spec = &spec;
    e.ctx = ctx;
    e.host = spec.fn->host;
    e.name = spec.fn->name.c_str();
    e.grid = {spec.grid[0], spec.grid[1], spec.grid[2]};
    e.block = {spec.block[0], spec.block[1], spec.block[2]};
    e.tpb = spec.block[0] * spec.block[1] * spec.block[2];
    e.nblocks = uint64_t(spec.grid[0]) * spec.grid[1] * spec.grid[2];
    for (uint32_t off : spec.offsets)
        e.args.push_back(reinterpret_cast<uint8_t*>(spec.storage.data()) + off);
    shared_range(e.host, &e.shared_lo, &e.shared_len);
    // The allocations the pointer parameters point into go into the access cache first.
    for (size_t i = 0; i < e.host->kinds.size() && i < e.args.size(); ++i) {
        if (e.host->kinds[i] == 0) continue;
        uintptr_t p;
        std::memcpy(&p, e.args[i], sizeof p);
        if (auto a = find_live(p, 1)) {
            if (a->ctx->device != ctx->device || e.held.count(a.get())) continue;
            Exec::Hot& h = e.hot[e.hot_next];
            e.hot_next = (e.hot_next + 1) % HOT;
            h = {a->base, a->size, a.get()};
            e.held.emplace(a.get(), std::move(a));
        }
    }
    int schedules = std::max(1, spec.schedules);
    e.cow = schedules > 1;
    std::vector<Fiber> fibers(e.tpb);
    for (uint32_t t = 0; t < e.tpb; ++t) {
        fibers[t].linear = t;
        fibers[t].tid = unflatten(t, e.block);
    }
    cuda_sim_state.block_dim = e.block;
    cuda_sim_state.grid_dim = e.grid;
    std::vector<std::pair<Allocation*, std::vector<uint8_t>>> first_results;
    tls_exec = &e;
    int code = OK;
    for (int s = 0; s < schedules && code == OK; ++s) {
        e.schedule = s;
        e.track = spec.racecheck && s == 0;
        e.epoch = g_epoch.fetch_add(1) + 1;
        if (e.track && e.shared_len) e.shared_shadow.assign((e.shared_len + 3) / 4, Shadow{});
        std::mt19937_64 rng(cfg.seed ^ (spec.id * 0x9E3779B97F4A7C15ull) ^ uint64_t(s));
        std::vector<uint64_t> blocks(e.nblocks);
        for (uint64_t b = 0; b < e.nblocks; ++b) blocks[b] = b;
        if (s == 1) std::reverse(blocks.begin(), blocks.end());
        if (s >= 2) std::shuffle(blocks.begin(), blocks.end(), rng);
        for (uint64_t b : blocks) {
            if (!run_block(e, b, fibers, rng)) {
                code = e.fault == Fault::BAD_ACCESS ? ILLEGAL_ADDRESS : LAUNCH_FAILED;
                break;
            }
        }
        counters.schedules++;
        if (code != OK || !e.cow) break;
        // Compare with the first run's results, then restore the memory the launch found.
        for (auto& [a, before] : e.snapshots) {
            auto* p = reinterpret_cast<uint8_t*>(a->base);
            if (s == 0) {
                first_results.emplace_back(a.get(), std::vector<uint8_t>(p, p + a->size));
            } else {
                const std::vector<uint8_t>* expect = &before;
                for (auto& [fa, r] : first_results)
                    if (fa == a.get()) expect = &r;
                long long d = first_difference(p, expect->data(), a->size);
                if (d >= 0 && code == OK) {
                    counters.findings++;
                    e.finding = strprintf(
                        "kernel %s gives different results when its threads and blocks run in %s order than "
                        "in forward order: byte %lld of allocation #%llu (%zu bytes at 0x%llx) is 0x%02x, not "
                        "0x%02x (a race: threads of one barrier phase, or different blocks, touch the same "
                        "memory)",
                        e.name, schedule_name(s), d, (unsigned long long)a->id, a->size,
                        (unsigned long long)a->base, p[d], (*expect)[d]);
                    code = LAUNCH_FAILED;
                }
            }
            if (s + 1 < schedules) std::memcpy(p, before.data(), a->size);
        }
    }
    tls_exec = nullptr;
    counters.threads += e.threads_done;
    if (code == OK && e.race_found) code = LAUNCH_FAILED;
    if (code != OK) {
        if (e.fault == Fault::BAD_ACCESS || e.fault == Fault::BARRIER_MISMATCH || e.fault == Fault::NO_PTX_BARRIER)
            counters.findings++;
        *msg = e.finding;
    }
    return code;
}

}  // namespace sim

using sim::tls_exec;

SIM_EXPORT void cuda_sim_syncthreads(const char* file, int line) {
    auto* e = tls_exec;
    if (!e || !e->cur) return;
    if (!e->spec->fn->ptx.barrier) {
        e->fault = sim::Fault::NO_PTX_BARRIER;
        e->finding = sim::strprintf(
            "kernel %s calls __syncthreads() at %s:%d, but its PTX has no barrier instruction: the host build "
            "and the PTX come from different sources (rebuild both)",
            e->name, file, line);
        sim::abort_thread(*e);
    }
    e->cur->bar_file = file;
    e->cur->bar_line = line;
    e->cur->state = sim::Fiber::BARRIER;
    sim::fiber_switch(&e->cur->ctx, &e->sched);
}

SIM_EXPORT void cuSimSetThreadChecks(int schedules, int racecheck) {
    sim::t_schedules = schedules;
    sim::t_racecheck = racecheck;
}

// gcc's ThreadSanitizer instrumentation calls these before every memory access of the kernels.
#define SIM_ACCESS(n)                                                                              \
    SIM_EXPORT void __tsan_read##n(void* p) { sim::access(p, n, false); }                          \
    SIM_EXPORT void __tsan_write##n(void* p) { sim::access(p, n, true); }                          \
    SIM_EXPORT void __tsan_unaligned_read##n(void* p) { sim::access(p, n, false); }                \
    SIM_EXPORT void __tsan_unaligned_write##n(void* p) { sim::access(p, n, true); }                \
    SIM_EXPORT void __tsan_volatile_read##n(void* p) { sim::access(p, n, false); }                 \
    SIM_EXPORT void __tsan_volatile_write##n(void* p) { sim::access(p, n, true); }
SIM_ACCESS(1)
SIM_ACCESS(2)
SIM_ACCESS(4)
SIM_ACCESS(8)
SIM_ACCESS(16)
SIM_EXPORT void __tsan_read_range(void* p, unsigned long n) {
    for (unsigned long i = 0; i < n; i += 8) sim::access(static_cast<char*>(p) + i, n - i < 8 ? n - i : 8, false);
}
SIM_EXPORT void __tsan_write_range(void* p, unsigned long n) {
    for (unsigned long i = 0; i < n; i += 8) sim::access(static_cast<char*>(p) + i, n - i < 8 ? n - i : 8, true);
}
SIM_EXPORT void __tsan_init(void) {}
SIM_EXPORT void __tsan_func_entry(void*) {}
SIM_EXPORT void __tsan_func_exit(void) {}
SIM_EXPORT void __tsan_vptr_read(void**) {}
SIM_EXPORT void __tsan_vptr_update(void**, void*) {}
