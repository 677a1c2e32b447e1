// The CUDA driver API entry points of the simulated libcuda.so.1, with the driver's documented
// semantics and error codes: initialisation, devices, contexts (current per host thread, with
// push/pop), device and pinned host memory, copies with their host-synchronisation rules,
// memsets, streams, events, modules (PTX), launches.
//
// Every call that needs a current context checks the calling thread's and returns
// CUDA_ERROR_INVALID_CONTEXT without one. After a kernel fault the context is poisoned: every
// call returns the fault's code (CUDA_SIM_STICKY=0 delivers it once, to the next
// synchronising call, instead).
#include <algorithm>
#include <cstring>
#include <set>

#include "sim.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef sim::Context* CUcontext;
typedef sim::Module* CUmodule;
typedef sim::Function* CUfunction;
typedef sim::Stream* CUstream;
typedef sim::Event* CUevent;

namespace sim {

std::mutex g_mu;
std::vector<std::unique_ptr<Device>> g_devices;
std::atomic<bool> g_initialized{false};

namespace {

thread_local std::vector<Context*> ctx_stack;
std::vector<Context*> contexts;  // every context ever created (under g_mu)
std::set<const void*> handles;  // live contexts, streams, modules, functions, events (under g_mu)
std::atomic<uint64_t> launch_count{0};

bool live_handle(const void* h) {
    std::lock_guard<std::mutex> lock(g_mu);
    return handles.count(h) != 0;
}

void add_handle(const void* h) {
    std::lock_guard<std::mutex> lock(g_mu);
    handles.insert(h);
}

void remove_handle(const void* h) {
    std::lock_guard<std::mutex> lock(g_mu);
    handles.erase(h);
}

void start_worker(Stream* s) {
    s->worker = std::thread([s] { s->loop(); });
    s->worker.detach();
}

Context* new_context(Device* dev) {
    auto* c = new Context();
    c->device = dev;
    c->null_stream = std::make_unique<Stream>();
    c->null_stream->ctx = c;
    c->null_stream->legacy = true;
    start_worker(c->null_stream.get());
    add_handle(c);
    std::lock_guard<std::mutex> lock(g_mu);
    contexts.push_back(c);
    return c;
}

uint64_t last_seq(Stream* s) {
    std::lock_guard<std::mutex> lock(s->mu);
    return s->next_seq - 1;
}

Device* device_of(CUdevice d) {
    if (d < 0 || d >= static_cast<int>(g_devices.size())) return nullptr;
    return g_devices[d].get();
}

void wait_context(Context* c) {
    for (Stream* s : c->all_streams()) s->wait_all();
}

}  // namespace

Context* current_context() { return ctx_stack.empty() ? nullptr : ctx_stack.back(); }

Stream* resolve_stream(void* h, Context* c, int* err) {
    auto v = reinterpret_cast<uintptr_t>(h);
    if (v == 0 || v == 1 || v == 2) return c->null_stream.get();  // NULL, CU_STREAM_LEGACY, _PER_THREAD
    auto* s = static_cast<Stream*>(h);
    if (!live_handle(s)) {
        *err = INVALID_HANDLE;
        return nullptr;
    }
    if (s->ctx != c) {
        *err = INVALID_HANDLE;  // a stream of another context
        return nullptr;
    }
    return s;
}

uint64_t submit(Stream* s, Op op) {
    Context* c = s->ctx;
    if (s->legacy) {
        std::vector<Stream*> others;
        {
            std::lock_guard<std::mutex> lock(g_mu);
            others = c->streams;
        }
        for (Stream* t : others)
            if (t->blocking) op.deps.emplace_back(t, last_seq(t));
    } else if (s->blocking) {
        op.deps.emplace_back(c->null_stream.get(), last_seq(c->null_stream.get()));
    }
    return s->enqueue(std::move(op));
}

bool check_live(Context* c, uintptr_t p, size_t n, const char* what, const char* role) {
    auto a = find_live(p, n);
    if (a && a->ctx->device == c->device) return true;
    c->fault(ILLEGAL_ADDRESS,
             strprintf("%s: its %s, %zu bytes at 0x%llx, is %s", what, role, n, (unsigned long long)p,
                       describe_address(p, n).c_str()));
    return false;
}

}  // namespace sim

using namespace sim;

#define ENTRY(name)                                      \
    if (int injected_ = sim::enter(name)) return injected_; \
    if (!sim::g_initialized) return sim::NOT_INITIALIZED;

// The calling thread's current context as `c`, usable (not destroyed, not faulted).
#define NEED_CTX(c)                                          \
    sim::Context* c = sim::current_context();                \
    if (!c) return sim::INVALID_CONTEXT;                     \
    if (c->destroyed) return sim::CONTEXT_IS_DESTROYED;      \
    if (sim::cfg.sticky && c->sticky.load()) return c->sticky.load();

// ---------------------------------------------------------------- initialisation, errors
SIM_EXPORT CUresult cuInit(unsigned flags) {
    if (int injected = sim::enter("cuInit")) return injected;
    if (flags != 0) return INVALID_VALUE;
    if (cfg.devices <= 0) return NO_DEVICE;
    std::lock_guard<std::mutex> lock(g_mu);
    if (!g_initialized) {
        for (int i = 0; i < cfg.devices; ++i) {
            auto d = std::make_unique<Device>();
            d->ordinal = i;
            d->total = cfg.memory;
            g_devices.push_back(std::move(d));
        }
        g_initialized = true;
    }
    return OK;
}

SIM_EXPORT CUresult cuDriverGetVersion(int* version) {
    if (!version) return INVALID_VALUE;
    *version = 13000;
    return OK;
}

SIM_EXPORT CUresult cuGetErrorName(CUresult code, const char** out) {
    if (!out) return INVALID_VALUE;
    *out = code_name(code);
    return *out ? OK : INVALID_VALUE;
}

SIM_EXPORT CUresult cuGetErrorString(CUresult code, const char** out) {
    if (!out) return INVALID_VALUE;
    const char* d = detail(code);
    *out = d ? d : code_description(code);
    return *out ? OK : INVALID_VALUE;
}

// ---------------------------------------------------------------- devices
SIM_EXPORT CUresult cuDeviceGetCount(int* count) {
    ENTRY("cuDeviceGetCount");
    if (!count) return INVALID_VALUE;
    *count = static_cast<int>(g_devices.size());
    return OK;
}

SIM_EXPORT CUresult cuDeviceGet(CUdevice* dev, int ordinal) {
    ENTRY("cuDeviceGet");
    if (!dev) return INVALID_VALUE;
    if (!device_of(ordinal)) return INVALID_DEVICE;
    *dev = ordinal;
    return OK;
}

SIM_EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
    ENTRY("cuDeviceGetName");
    if (!name || len <= 0) return INVALID_VALUE;
    if (!device_of(dev)) return INVALID_DEVICE;
    std::snprintf(name, len, "cuda-sim simulated GPU (sm_%d)", cfg.sm);
    return OK;
}

SIM_EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
    ENTRY("cuDeviceTotalMem_v2");
    if (!bytes) return INVALID_VALUE;
    Device* d = device_of(dev);
    if (!d) return INVALID_DEVICE;
    *bytes = d->total;
    return OK;
}

SIM_EXPORT CUresult cuDeviceGetAttribute(int* value, int attrib, CUdevice dev) {
    ENTRY("cuDeviceGetAttribute");
    if (!value) return INVALID_VALUE;
    if (!device_of(dev)) return INVALID_DEVICE;
    switch (attrib) {
        case 1: *value = 1024; break;          // MAX_THREADS_PER_BLOCK
        case 2: *value = 1024; break;          // MAX_BLOCK_DIM_X
        case 3: *value = 1024; break;          // MAX_BLOCK_DIM_Y
        case 4: *value = 64; break;            // MAX_BLOCK_DIM_Z
        case 5: *value = 2147483647; break;    // MAX_GRID_DIM_X
        case 6: *value = 65535; break;         // MAX_GRID_DIM_Y
        case 7: *value = 65535; break;         // MAX_GRID_DIM_Z
        case 8: *value = 49152; break;         // MAX_SHARED_MEMORY_PER_BLOCK
        case 9: *value = 65536; break;         // TOTAL_CONSTANT_MEMORY
        case 10: *value = 32; break;           // WARP_SIZE
        case 12: *value = 65536; break;        // MAX_REGISTERS_PER_BLOCK
        case 13: *value = 1980000; break;      // CLOCK_RATE (kHz)
        case 16: *value = 132; break;          // MULTIPROCESSOR_COUNT
        case 39: *value = 2048; break;         // MAX_THREADS_PER_MULTIPROCESSOR
        case 41: *value = 1; break;            // UNIFIED_ADDRESSING
        case 75: *value = cfg.sm / 10; break;  // COMPUTE_CAPABILITY_MAJOR
        case 76: *value = cfg.sm % 10; break;  // COMPUTE_CAPABILITY_MINOR
        case 97: *value = 232448; break;       // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        default:
            if (attrib <= 0 || attrib > 150) return INVALID_VALUE;
            *value = 0;
    }
    return OK;
}

SIM_EXPORT CUresult cuDeviceComputeCapability(int* major, int* minor, CUdevice dev) {
    ENTRY("cuDeviceComputeCapability");
    if (!major || !minor) return INVALID_VALUE;
    if (!device_of(dev)) return INVALID_DEVICE;
    *major = cfg.sm / 10;
    *minor = cfg.sm % 10;
    return OK;
}

// ---------------------------------------------------------------- contexts
SIM_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) {
    ENTRY("cuDevicePrimaryCtxRetain");
    if (!pctx) return INVALID_VALUE;
    Device* d = device_of(dev);
    if (!d) return INVALID_DEVICE;
    Context* c;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        c = d->primary;
    }
    if (!c) {
        c = new_context(d);
        std::lock_guard<std::mutex> lock(g_mu);
        if (d->primary) {
            c = d->primary;  // another thread won
        } else {
            d->primary = c;
        }
    }
    std::lock_guard<std::mutex> lock(g_mu);
    d->primary_refs++;
    *pctx = c;
    return OK;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    ENTRY("cuDevicePrimaryCtxRelease_v2");
    Device* d = device_of(dev);
    if (!d) return INVALID_DEVICE;
    std::lock_guard<std::mutex> lock(g_mu);
    if (d->primary_refs <= 0) return INVALID_CONTEXT;
    // The primary context stays (its memory too): smallgrad holds it for the life of the process.
    d->primary_refs--;
    return OK;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned* flags, int* active) {
    ENTRY("cuDevicePrimaryCtxGetState");
    Device* d = device_of(dev);
    if (!d) return INVALID_DEVICE;
    if (!flags || !active) return INVALID_VALUE;
    std::lock_guard<std::mutex> lock(g_mu);
    *flags = 0;
    *active = d->primary_refs > 0;
    return OK;
}

SIM_EXPORT CUresult cuCtxCreate_v2(CUcontext* pctx, unsigned flags, CUdevice dev) {
    ENTRY("cuCtxCreate_v2");
    (void)flags;
    if (!pctx) return INVALID_VALUE;
    Device* d = device_of(dev);
    if (!d) return INVALID_DEVICE;
    Context* c = new_context(d);
    ctx_stack.push_back(c);
    *pctx = c;
    return OK;
}

SIM_EXPORT CUresult cuCtxDestroy_v2(CUcontext c) {
    ENTRY("cuCtxDestroy_v2");
    if (!c || !live_handle(c)) return INVALID_VALUE;
    wait_context(c);
    c->destroyed = true;
    remove_handle(c);
    ctx_stack.erase(std::remove(ctx_stack.begin(), ctx_stack.end(), c), ctx_stack.end());
    return OK;
}

SIM_EXPORT CUresult cuCtxSetCurrent(CUcontext c) {
    ENTRY("cuCtxSetCurrent");
    if (c && !live_handle(c)) return INVALID_CONTEXT;
    if (!c) {
        if (!ctx_stack.empty()) ctx_stack.pop_back();
    } else if (ctx_stack.empty()) {
        ctx_stack.push_back(c);
    } else {
        ctx_stack.back() = c;
    }
    return OK;
}

SIM_EXPORT CUresult cuCtxGetCurrent(CUcontext* pctx) {
    ENTRY("cuCtxGetCurrent");
    if (!pctx) return INVALID_VALUE;
    *pctx = current_context();
    return OK;
}

SIM_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext c) {
    ENTRY("cuCtxPushCurrent_v2");
    if (!c || !live_handle(c)) return INVALID_CONTEXT;
    ctx_stack.push_back(c);
    return OK;
}

SIM_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext* pctx) {
    ENTRY("cuCtxPopCurrent_v2");
    if (ctx_stack.empty()) return INVALID_CONTEXT;
    if (pctx) *pctx = ctx_stack.back();
    ctx_stack.pop_back();
    return OK;
}

SIM_EXPORT CUresult cuCtxGetDevice(CUdevice* dev) {
    ENTRY("cuCtxGetDevice");
    Context* c = current_context();
    if (!c) return INVALID_CONTEXT;
    if (!dev) return INVALID_VALUE;
    *dev = c->device->ordinal;
    return OK;
}

SIM_EXPORT CUresult cuCtxSynchronize(void) {
    ENTRY("cuCtxSynchronize");
    Context* c = current_context();
    if (!c) return INVALID_CONTEXT;
    counters.syncs++;
    wait_context(c);
    return c->take_error();
}

// ---------------------------------------------------------------- memory
SIM_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
    ENTRY("cuMemAlloc_v2");
    NEED_CTX(c);
    if (!dptr) return INVALID_VALUE;
    uintptr_t p = 0;
    int r = mem_alloc(c, bytes, &p);
    if (r == OK) *dptr = p;
    return r;
}

SIM_EXPORT CUresult cuMemFree_v2(CUdeviceptr p) {
    ENTRY("cuMemFree_v2");
    NEED_CTX(c);
    if (p == 0) return OK;
    auto a = find_live(p, 1);
    if (!a || a->base != p) return INVALID_VALUE;
    if (cfg.strict) {
        // No implicit synchronisation: the driver documents none, so a program must not rely on
        // one. Queued work that still uses the memory will fault when it runs; say why now.
        std::string who;
        for (Stream* s : a->ctx->all_streams()) {
            if (s->uses(a->base, a->size, &who)) {
                report(strprintf("cuMemFree of allocation #%llu (%zu bytes at 0x%llx) while queued work (%s) still "
                                 "uses it: synchronise the stream before freeing",
                                 (unsigned long long)a->id, a->size, (unsigned long long)a->base, who.c_str()));
                break;
            }
        }
    } else {
        counters.implicit_syncs++;
        wait_context(a->ctx);
    }
    return mem_free(p);
}

SIM_EXPORT CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    ENTRY("cuMemGetInfo_v2");
    NEED_CTX(c);
    if (!free_bytes || !total) return INVALID_VALUE;
    device_memory_info(c, free_bytes, total);
    return OK;
}

SIM_EXPORT CUresult cuMemAllocHost_v2(void** pp, size_t bytes) {
    ENTRY("cuMemAllocHost_v2");
    NEED_CTX(c);
    (void)c;
    if (!pp || bytes == 0) return INVALID_VALUE;
    return host_alloc(bytes, pp);
}

SIM_EXPORT CUresult cuMemHostAlloc(void** pp, size_t bytes, unsigned flags) {
    ENTRY("cuMemHostAlloc");
    NEED_CTX(c);
    (void)c;
    (void)flags;
    if (!pp || bytes == 0) return INVALID_VALUE;
    return host_alloc(bytes, pp);
}

SIM_EXPORT CUresult cuMemFreeHost(void* p) {
    ENTRY("cuMemFreeHost");
    NEED_CTX(c);
    (void)c;
    size_t n = pinned_size(p);
    if (n == 0) return INVALID_VALUE;
    // A queued copy into (or out of) this memory would touch freed host memory when it runs:
    // say so, and wait for it (as drivers do) instead of corrupting the process.
    std::vector<Context*> all;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        all = contexts;
    }
    for (Context* ctx : all) {
        for (Stream* s : ctx->all_streams()) {
            std::string who;
            if (s->uses(reinterpret_cast<uintptr_t>(p), n, &who)) {
                report(strprintf("cuMemFreeHost of pinned memory (%zu bytes at %p) that queued work (%s) still uses: "
                                 "synchronise the stream before freeing or reusing it",
                                 n, p, who.c_str()));
                counters.implicit_syncs++;
                s->wait_all();
            }
        }
    }
    return host_free(p);
}

namespace {

CUresult copy_htod(const char* what, CUdeviceptr dst, const void* src, size_t n, Stream* s, bool wait) {
    if (n == 0) return OK;
    if (!src || !find_live(dst, n)) return INVALID_VALUE;
    counters.h2d++;
    counters.h2d_bytes += n;
    Op op;
    op.what = what;
    op.uses = {static_cast<uintptr_t>(dst)};
    Context* c = s->ctx;
    if (is_pinned(src, n)) {
        op.uses.push_back(reinterpret_cast<uintptr_t>(src));
        // Pinned memory is read when the copy runs: the host must not change it before then.
        op.run = [=](Stream&) {
            if (check_live(c, dst, n, what, "destination")) std::memcpy(reinterpret_cast<void*>(dst), src, n);
        };
    } else {
        // Pageable memory is staged into the driver's own buffer before the call returns.
        auto staged = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(src),
                                                             static_cast<const uint8_t*>(src) + n);
        op.run = [=](Stream&) {
            if (check_live(c, dst, n, what, "destination"))
                std::memcpy(reinterpret_cast<void*>(dst), staged->data(), n);
        };
    }
    uint64_t seq = submit(s, std::move(op));
    if (wait) {
        counters.implicit_syncs++;
        s->wait(seq);
        return c->take_error();
    }
    return OK;
}

CUresult copy_dtoh(const char* what, void* dst, CUdeviceptr src, size_t n, Stream* s, bool async) {
    if (n == 0) return OK;
    if (!dst || !find_live(src, n)) return INVALID_VALUE;
    counters.d2h++;
    counters.d2h_bytes += n;
    Context* c = s->ctx;
    bool pinned = is_pinned(dst, n);
    Op op;
    op.what = what;
    op.uses = {static_cast<uintptr_t>(src)};
    op.run = [=](Stream&) {
        if (check_live(c, src, n, what, "source")) std::memcpy(dst, reinterpret_cast<const void*>(src), n);
    };
    if (async && pinned) {
        op.uses.push_back(reinterpret_cast<uintptr_t>(dst));
        // Truly asynchronous: until the stream is synchronised the destination holds garbage.
        std::memset(dst, 0xFF, n);
        submit(s, std::move(op));
        return OK;
    }
    // To pageable memory (or the synchronous form): returns once the copy is done.
    uint64_t seq = submit(s, std::move(op));
    counters.implicit_syncs++;
    s->wait(seq);
    return c->take_error();
}

CUresult copy_dtod(const char* what, CUdeviceptr dst, CUdeviceptr src, size_t n, Stream* s) {
    if (n == 0) return OK;
    if (!find_live(dst, n) || !find_live(src, n)) return INVALID_VALUE;
    counters.d2d++;
    counters.d2d_bytes += n;
    Context* c = s->ctx;
    Op op;
    op.what = what;
    op.uses = {static_cast<uintptr_t>(dst), static_cast<uintptr_t>(src)};
    op.run = [=](Stream&) {
        if (check_live(c, src, n, what, "source") && check_live(c, dst, n, what, "destination"))
            std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
    };
    submit(s, std::move(op));
    return OK;
}

CUresult memset_bytes(const char* what, CUdeviceptr dst, uint32_t value, size_t count, size_t width, Stream* s) {
    size_t n = count * width;
    if (n == 0) return OK;
    if (!find_live(dst, n)) return INVALID_VALUE;
    if (dst % width) return INVALID_VALUE;
    counters.memsets++;
    Context* c = s->ctx;
    Op op;
    op.what = what;
    op.uses = {static_cast<uintptr_t>(dst)};
    op.run = [=](Stream&) {
        if (!check_live(c, dst, n, what, "destination")) return;
        if (width == 1) {
            std::memset(reinterpret_cast<void*>(dst), static_cast<int>(value & 0xFF), n);
        } else {
            auto* p = reinterpret_cast<uint32_t*>(dst);
            for (size_t i = 0; i < count; ++i) p[i] = value;
        }
    };
    submit(s, std::move(op));
    return OK;
}

}  // namespace

#define STREAM_OF(h, s)                                     \
    int serr_ = 0;                                          \
    sim::Stream* s = sim::resolve_stream((h), c, &serr_);   \
    if (!s) return serr_;

SIM_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    ENTRY("cuMemcpyHtoD_v2");
    NEED_CTX(c);
    return copy_htod("cuMemcpyHtoD", dst, src, n, c->null_stream.get(), true);
}

SIM_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream h) {
    ENTRY("cuMemcpyHtoDAsync_v2");
    NEED_CTX(c);
    STREAM_OF(h, s);
    return copy_htod("cuMemcpyHtoDAsync", dst, src, n, s, false);
}

SIM_EXPORT CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    ENTRY("cuMemcpyDtoH_v2");
    NEED_CTX(c);
    return copy_dtoh("cuMemcpyDtoH", dst, src, n, c->null_stream.get(), false);
}

SIM_EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream h) {
    ENTRY("cuMemcpyDtoHAsync_v2");
    NEED_CTX(c);
    STREAM_OF(h, s);
    return copy_dtoh("cuMemcpyDtoHAsync", dst, src, n, s, true);
}

SIM_EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    ENTRY("cuMemcpyDtoD_v2");
    NEED_CTX(c);
    return copy_dtod("cuMemcpyDtoD", dst, src, n, c->null_stream.get());
}

SIM_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream h) {
    ENTRY("cuMemcpyDtoDAsync_v2");
    NEED_CTX(c);
    STREAM_OF(h, s);
    return copy_dtod("cuMemcpyDtoDAsync", dst, src, n, s);
}

SIM_EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
    ENTRY("cuMemsetD8_v2");
    NEED_CTX(c);
    return memset_bytes("cuMemsetD8", dst, v, n, 1, c->null_stream.get());
}

SIM_EXPORT CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream h) {
    ENTRY("cuMemsetD8Async");
    NEED_CTX(c);
    STREAM_OF(h, s);
    return memset_bytes("cuMemsetD8Async", dst, v, n, 1, s);
}

SIM_EXPORT CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned v, size_t n) {
    ENTRY("cuMemsetD32_v2");
    NEED_CTX(c);
    return memset_bytes("cuMemsetD32", dst, v, n, 4, c->null_stream.get());
}

SIM_EXPORT CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, CUstream h) {
    ENTRY("cuMemsetD32Async");
    NEED_CTX(c);
    STREAM_OF(h, s);
    return memset_bytes("cuMemsetD32Async", dst, v, n, 4, s);
}

// ---------------------------------------------------------------- streams, events
SIM_EXPORT CUresult cuStreamCreate(CUstream* ph, unsigned flags) {
    ENTRY("cuStreamCreate");
    NEED_CTX(c);
    if (!ph || (flags & ~1u)) return INVALID_VALUE;
    auto* s = new Stream();
    s->ctx = c;
    s->blocking = (flags & 1u) == 0;  // CU_STREAM_NON_BLOCKING = 1
    start_worker(s);
    {
        std::lock_guard<std::mutex> lock(g_mu);
        c->streams.push_back(s);
        handles.insert(s);
    }
    *ph = s;
    return OK;
}

SIM_EXPORT CUresult cuStreamCreateWithPriority(CUstream* ph, unsigned flags, int priority) {
    (void)priority;
    return cuStreamCreate(ph, flags);
}

SIM_EXPORT CUresult cuStreamDestroy_v2(CUstream h) {
    ENTRY("cuStreamDestroy_v2");
    NEED_CTX(c);
    if (!h || !live_handle(h) || h->ctx != c) return INVALID_HANDLE;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        handles.erase(h);
        c->streams.erase(std::remove(c->streams.begin(), c->streams.end(), h), c->streams.end());
    }
    // Queued work still completes; the worker ends after it (the object is kept: the worker
    // may still be running).
    std::lock_guard<std::mutex> lock(h->mu);
    h->flush_to = h->next_seq - 1;
    h->stop = true;
    h->cv.notify_all();
    return OK;
}

SIM_EXPORT CUresult cuStreamSynchronize(CUstream h) {
    ENTRY("cuStreamSynchronize");
    Context* c = current_context();
    Stream* s;
    auto v = reinterpret_cast<uintptr_t>(h);
    if (v == 0 || v == 1 || v == 2) {
        if (!c) return INVALID_CONTEXT;
        s = c->null_stream.get();
    } else {
        if (!live_handle(h)) return INVALID_HANDLE;
        s = h;
    }
    counters.syncs++;
    if (s->legacy) {
        wait_context(s->ctx);  // the legacy stream waits for the blocking streams too
    } else {
        s->wait_all();
    }
    return s->ctx->take_error();
}

SIM_EXPORT CUresult cuStreamQuery(CUstream h) {
    ENTRY("cuStreamQuery");
    NEED_CTX(c);
    STREAM_OF(h, s);
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->done_seq + 1 >= s->next_seq) return OK;
    s->flush_to = s->next_seq - 1;  // a polling host must see progress
    s->cv.notify_all();
    return NOT_READY;
}

SIM_EXPORT CUresult cuEventCreate(CUevent* ph, unsigned flags) {
    ENTRY("cuEventCreate");
    NEED_CTX(c);
    (void)flags;
    if (!ph) return INVALID_VALUE;
    auto* e = new Event();
    e->ctx = c;
    add_handle(e);
    *ph = e;
    return OK;
}

SIM_EXPORT CUresult cuEventDestroy_v2(CUevent e) {
    ENTRY("cuEventDestroy_v2");
    if (!e || !live_handle(e)) return INVALID_HANDLE;
    remove_handle(e);  // the object stays: a queued record may still complete it
    return OK;
}

SIM_EXPORT CUresult cuEventRecord(CUevent e, CUstream h) {
    ENTRY("cuEventRecord");
    NEED_CTX(c);
    if (!e || !live_handle(e)) return INVALID_HANDLE;
    STREAM_OF(h, s);
    e->done = false;
    Op op;
    op.what = "cuEventRecord";
    op.run = [](Stream&) {};
    op.record = e;
    e->stream = s;
    e->seq = submit(s, std::move(op));
    return OK;
}

SIM_EXPORT CUresult cuEventQuery(CUevent e) {
    ENTRY("cuEventQuery");
    if (!e || !live_handle(e)) return INVALID_HANDLE;
    if (e->done) return OK;
    if (e->stream) {
        std::lock_guard<std::mutex> lock(e->stream->mu);
        e->stream->flush_to = std::max(e->stream->flush_to, e->seq.load());
        e->stream->cv.notify_all();
    }
    return NOT_READY;
}

SIM_EXPORT CUresult cuEventSynchronize(CUevent e) {
    ENTRY("cuEventSynchronize");
    if (!e || !live_handle(e)) return INVALID_HANDLE;
    counters.syncs++;
    if (e->stream) e->stream->wait(e->seq);
    return e->ctx->take_error();
}

SIM_EXPORT CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
    ENTRY("cuEventElapsedTime");
    if (!ms) return INVALID_VALUE;
    if (!start || !end || !live_handle(start) || !live_handle(end)) return INVALID_HANDLE;
    if (!start->stream || !end->stream) return INVALID_HANDLE;  // never recorded
    if (!start->done || !end->done) return NOT_READY;
    *ms = static_cast<float>(end->time_ms - start->time_ms);
    return OK;
}

SIM_EXPORT CUresult cuStreamWaitEvent(CUstream h, CUevent e, unsigned flags) {
    ENTRY("cuStreamWaitEvent");
    NEED_CTX(c);
    (void)flags;
    STREAM_OF(h, s);
    if (!e || !live_handle(e)) return INVALID_HANDLE;
    if (!e->stream) return OK;
    Op op;
    op.what = "cuStreamWaitEvent";
    op.run = [](Stream&) {};
    op.deps.emplace_back(e->stream, e->seq.load());
    submit(s, std::move(op));
    return OK;
}

// ---------------------------------------------------------------- modules
namespace {

enum JitOption { INFO_LOG = 3, INFO_LOG_SIZE = 4, ERROR_LOG = 5, ERROR_LOG_SIZE = 6 };

struct JitLogs {
    char* info = nullptr;
    char* error = nullptr;
    int info_size_slot = -1, error_size_slot = -1;
    size_t info_size = 0, error_size = 0;
};

void write_log(char* buf, size_t cap, void** values, int slot, const std::string& text) {
    if (!buf || cap == 0) return;
    size_t n = std::min(cap - 1, text.size());
    std::memcpy(buf, text.data(), n);
    buf[n] = '\0';
    if (values && slot >= 0) values[slot] = reinterpret_cast<void*>(static_cast<uintptr_t>(n + 1));
}

CUresult load_module(CUmodule* out, const void* image, unsigned nopts, int* options, void** values) {
    NEED_CTX(c);
    if (!out || !image) return INVALID_VALUE;
    JitLogs logs;
    for (unsigned i = 0; i < nopts && options && values; ++i) {
        auto v = reinterpret_cast<uintptr_t>(values[i]);
        switch (options[i]) {
            case INFO_LOG: logs.info = static_cast<char*>(values[i]); break;
            case INFO_LOG_SIZE: logs.info_size = v, logs.info_size_slot = static_cast<int>(i); break;
            case ERROR_LOG: logs.error = static_cast<char*>(values[i]); break;
            case ERROR_LOG_SIZE: logs.error_size = v, logs.error_size_slot = static_cast<int>(i); break;
            default: break;
        }
    }
    auto fail = [&](int code, const std::string& log) {
        write_log(logs.error, logs.error_size, values, logs.error_size_slot, log);
        write_log(logs.info, logs.info_size, values, logs.info_size_slot, "");
        return code;
    };
    const auto* bytes = static_cast<const unsigned char*>(image);
    uint32_t magic;
    std::memcpy(&magic, bytes, 4);
    if ((bytes[0] == 0x7f && bytes[1] == 'E' && bytes[2] == 'L' && bytes[3] == 'F') || magic == 0xBA55ED50u)
        return fail(NOT_SUPPORTED, "cuda-sim: the image is a cubin or fatbin; the simulator runs PTX only");
    load_kernel_libraries();
    PtxModule pm;
    std::string err;
    if (!parse_ptx(static_cast<const char*>(image), &pm, &err)) return fail(INVALID_PTX, err);
    if (pm.version_major > cfg.ptx_max_major ||
        (pm.version_major == cfg.ptx_max_major && pm.version_minor > cfg.ptx_max_minor))
        return fail(UNSUPPORTED_PTX_VERSION,
                    strprintf("ptxas application ptx input, line 1; fatal   : Unsupported .version %d.%d; current "
                              "version is '%d.%d'",
                              pm.version_major, pm.version_minor, cfg.ptx_max_major, cfg.ptx_max_minor));
    if (pm.target_sm > cfg.sm)
        return fail(INVALID_PTX, strprintf("ptxas fatal   : SM version specified by .target is higher than default SM "
                                           "version assumed (sm_%d > sm_%d)",
                                           pm.target_sm, cfg.sm));
    std::string problems;
    auto add = [&](const std::string& p) { problems += (problems.empty() ? "" : "\n") + p; };
    auto mod = std::make_unique<Module>();
    mod->ctx = c;
    for (auto& e : pm.entries) {
        const HostKernel* host = find_host_kernel(e.name);
        uint32_t param_bytes = 0;
        for (auto& p : e.params) {
            uint32_t al = std::max<uint32_t>(1, p.align);
            param_bytes = (param_bytes + al - 1) / al * al + p.size;
        }
        if (!host) {
            add(strprintf("cuda-sim: entry '%s' (PTX line %u) has no host build in %s", e.name.c_str(), e.line,
                          kernel_library_list().c_str()));
        } else if (host->sizes.size() != e.params.size()) {
            add(strprintf("cuda-sim: entry '%s' has %zu parameters in the PTX but %zu in its host build (%s)",
                          e.name.c_str(), e.params.size(), host->sizes.size(), host->library.c_str()));
        } else {
            for (size_t i = 0; i < e.params.size(); ++i)
                if (e.params[i].size != host->sizes[i])
                    add(strprintf("cuda-sim: parameter %zu of entry '%s' is %u bytes in the PTX but %u in its host "
                                  "build (%s)",
                                  i, e.name.c_str(), e.params[i].size, host->sizes[i], host->library.c_str()));
        }
        if (e.static_shared > 48 * 1024)
            add(strprintf("ptxas error   : Entry function '%s' uses too much shared data (0x%x bytes, 0xc000 max)",
                          e.name.c_str(), e.static_shared));
        if (param_bytes > cfg.max_param_bytes)
            add(strprintf("ptxas error   : Entry function '%s' uses too much parameter space (0x%x bytes, 0x%x max).",
                          e.name.c_str(), param_bytes, cfg.max_param_bytes));
        auto f = std::make_unique<Function>();
        f->module = mod.get();
        f->name = e.name;
        f->host = host;
        f->ptx = e;
        mod->functions.push_back(std::move(f));
    }
    if (!problems.empty()) return fail(INVALID_PTX, problems);
    write_log(logs.info, logs.info_size, values, logs.info_size_slot,
              strprintf("cuda-sim: %zu entries of PTX ISA %d.%d (.target sm_%d) run as their host build",
                        pm.entries.size(), pm.version_major, pm.version_minor, pm.target_sm));
    write_log(logs.error, logs.error_size, values, logs.error_size_slot, "");
    for (auto& f : mod->functions) add_handle(f.get());
    add_handle(mod.get());
    counters.module_loads++;
    *out = mod.release();
    return OK;
}

}  // namespace

SIM_EXPORT CUresult cuModuleLoadData(CUmodule* out, const void* image) {
    ENTRY("cuModuleLoadData");
    return load_module(out, image, 0, nullptr, nullptr);
}

SIM_EXPORT CUresult cuModuleLoadDataEx(CUmodule* out, const void* image, unsigned n, int* options, void** values) {
    ENTRY("cuModuleLoadDataEx");
    return load_module(out, image, n, options, values);
}

SIM_EXPORT CUresult cuModuleUnload(CUmodule m) {
    ENTRY("cuModuleUnload");
    NEED_CTX(c);
    if (!m || !live_handle(m)) return INVALID_HANDLE;
    wait_context(m->ctx);  // queued launches of its kernels finish first
    for (auto& f : m->functions) remove_handle(f.get());
    remove_handle(m);
    delete m;
    return OK;
}

SIM_EXPORT CUresult cuModuleGetFunction(CUfunction* out, CUmodule m, const char* name) {
    ENTRY("cuModuleGetFunction");
    NEED_CTX(c);
    if (!out || !name) return INVALID_VALUE;
    if (!m || !live_handle(m)) return INVALID_HANDLE;
    for (auto& f : m->functions) {
        if (f->name == name) {
            *out = f.get();
            return OK;
        }
    }
    return NOT_FOUND;
}

SIM_EXPORT CUresult cuFuncGetAttribute(int* value, int attrib, CUfunction f) {
    ENTRY("cuFuncGetAttribute");
    if (!value) return INVALID_VALUE;
    if (!f || !live_handle(f)) return INVALID_HANDLE;
    switch (attrib) {
        case 0: *value = 1024; break;                                                  // MAX_THREADS_PER_BLOCK
        case 1: *value = static_cast<int>(f->ptx.static_shared); break;                // SHARED_SIZE_BYTES
        case 2: *value = 0; break;                                                     // CONST_SIZE_BYTES
        case 3: *value = 0; break;                                                     // LOCAL_SIZE_BYTES
        case 4: *value = 32; break;                                                    // NUM_REGS
        case 5: *value = cfg.ptx_max_major * 10 + cfg.ptx_max_minor; break;            // PTX_VERSION
        case 6: *value = cfg.sm; break;                                                // BINARY_VERSION
        default: return INVALID_VALUE;
    }
    return OK;
}

// ---------------------------------------------------------------- launches
SIM_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                   unsigned bz, unsigned shared_bytes, CUstream h, void** params, void** extra) {
    ENTRY("cuLaunchKernel");
    NEED_CTX(c);
    if (!f || !live_handle(f)) return INVALID_HANDLE;
    if (f->module->ctx != c) return INVALID_HANDLE;  // a kernel of another context's module
    STREAM_OF(h, s);
    // The hardware's limits (sm_90), as the driver checks them.
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) return INVALID_VALUE;
    if (gx > 2147483647u || gy > 65535u || gz > 65535u) return INVALID_VALUE;
    if (bx > 1024u || by > 1024u || bz > 64u || uint64_t(bx) * by * bz > 1024u) return INVALID_VALUE;
    if (uint64_t(f->ptx.static_shared) + shared_bytes > 48u * 1024) return INVALID_VALUE;
    if (extra) {
        report(strprintf("cuLaunchKernel(%s): the `extra` parameter buffer is not supported by the simulator",
                         f->name.c_str()));
        return NOT_SUPPORTED;
    }
    size_t np = f->ptx.params.size();
    if (np > 0 && !params) return INVALID_VALUE;
    LaunchSpec spec;
    spec.fn = f;
    spec.grid[0] = gx, spec.grid[1] = gy, spec.grid[2] = gz;
    spec.block[0] = bx, spec.block[1] = by, spec.block[2] = bz;
    // The parameters are copied now, as the driver does: the caller may reuse its storage.
    size_t total = 0;
    for (auto& p : f->ptx.params) {
        spec.offsets.push_back(static_cast<uint32_t>(total));
        total += (p.size + 15) / 16 * 16;
    }
    spec.storage.assign(total / 8 + 1, 0);
    Op op;
    for (size_t i = 0; i < np; ++i) {
        if (!params[i]) return INVALID_VALUE;
        std::memcpy(reinterpret_cast<uint8_t*>(spec.storage.data()) + spec.offsets[i], params[i], f->ptx.params[i].size);
        if (f->host && i < f->host->kinds.size() && f->host->kinds[i] != 0) {
            uintptr_t p = 0;
            std::memcpy(&p, params[i], sizeof p);
            op.uses.push_back(p);
        }
    }
    spec.schedules = thread_schedules();
    spec.racecheck = thread_racecheck();
    static std::atomic<uint64_t> ids{0};
    spec.id = ++ids;
    uint64_t n = ++launch_count;
    counters.launches++;
    static const long long async_fault = [] {
        const char* v = std::getenv("CUDA_SIM_FAIL_ASYNC");
        return v ? std::atoll(v) : 0;
    }();
    op.what = "kernel " + f->name;
    op.run = [spec = std::move(spec), c, n](Stream&) mutable {
        if (async_fault > 0 && static_cast<long long>(n) == async_fault) {
            counters.injected++;
            c->fault(ILLEGAL_ADDRESS, strprintf("injected asynchronous fault in launch #%llu (kernel %s)",
                                                (unsigned long long)n, spec.fn->name.c_str()));
            return;
        }
        std::string msg;
        int r = run_grid(spec, c, &msg);
        if (r != OK) c->fault(r, msg);
    };
    submit(s, std::move(op));
    return OK;
}

// ---------------------------------------------------------------- the un-suffixed aliases
// cuda.h maps these names to their _v2 forms; the library exports both, and so does the
// simulator, so that binaries built against either spelling load.
SIM_EXPORT CUresult cuMemAlloc(CUdeviceptr* p, size_t n) { return cuMemAlloc_v2(p, n); }
SIM_EXPORT CUresult cuMemFree(CUdeviceptr p) { return cuMemFree_v2(p); }
SIM_EXPORT CUresult cuMemGetInfo(size_t* f, size_t* t) { return cuMemGetInfo_v2(f, t); }
SIM_EXPORT CUresult cuMemAllocHost(void** p, size_t n) { return cuMemAllocHost_v2(p, n); }
SIM_EXPORT CUresult cuMemcpyHtoD(CUdeviceptr d, const void* s, size_t n) { return cuMemcpyHtoD_v2(d, s, n); }
SIM_EXPORT CUresult cuMemcpyDtoH(void* d, CUdeviceptr s, size_t n) { return cuMemcpyDtoH_v2(d, s, n); }
SIM_EXPORT CUresult cuMemcpyDtoD(CUdeviceptr d, CUdeviceptr s, size_t n) { return cuMemcpyDtoD_v2(d, s, n); }
SIM_EXPORT CUresult cuMemcpyHtoDAsync(CUdeviceptr d, const void* s, size_t n, CUstream h) {
    return cuMemcpyHtoDAsync_v2(d, s, n, h);
}
SIM_EXPORT CUresult cuMemcpyDtoHAsync(void* d, CUdeviceptr s, size_t n, CUstream h) {
    return cuMemcpyDtoHAsync_v2(d, s, n, h);
}
SIM_EXPORT CUresult cuMemcpyDtoDAsync(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream h) {
    return cuMemcpyDtoDAsync_v2(d, s, n, h);
}
SIM_EXPORT CUresult cuMemsetD8(CUdeviceptr d, unsigned char v, size_t n) { return cuMemsetD8_v2(d, v, n); }
SIM_EXPORT CUresult cuMemsetD32(CUdeviceptr d, unsigned v, size_t n) { return cuMemsetD32_v2(d, v, n); }
SIM_EXPORT CUresult cuDeviceTotalMem(size_t* b, CUdevice d) { return cuDeviceTotalMem_v2(b, d); }
SIM_EXPORT CUresult cuCtxCreate(CUcontext* c, unsigned f, CUdevice d) { return cuCtxCreate_v2(c, f, d); }
SIM_EXPORT CUresult cuCtxDestroy(CUcontext c) { return cuCtxDestroy_v2(c); }
SIM_EXPORT CUresult cuCtxPushCurrent(CUcontext c) { return cuCtxPushCurrent_v2(c); }
SIM_EXPORT CUresult cuCtxPopCurrent(CUcontext* c) { return cuCtxPopCurrent_v2(c); }
SIM_EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice d) { return cuDevicePrimaryCtxRelease_v2(d); }
SIM_EXPORT CUresult cuStreamDestroy(CUstream s) { return cuStreamDestroy_v2(s); }
SIM_EXPORT CUresult cuEventDestroy(CUevent e) { return cuEventDestroy_v2(e); }
