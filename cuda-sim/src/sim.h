// cuda-sim internals shared by the driver (driver.cpp), device memory (memory.cpp), streams
// (stream.cpp), the grid executor (exec.cpp), PTX reading (ptx.cpp) and the simulated cuBLAS
// (cublas.cpp, a separate library that reaches these through the cuSimInternal* exports).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../include/cuda_sim.h"

#define SIM_EXPORT extern "C" __attribute__((visibility("default")))

namespace sim {

// CUDA's dim3 / uint3 as the kernels see it (cuda_sim_device.h).
struct dim3_ {
    unsigned x, y, z;
};

// CUresult codes (CUDA 13.0's values; the simulator returns them as plain ints).
enum Code : int {
    OK = 0,
    INVALID_VALUE = 1,
    OUT_OF_MEMORY = 2,
    NOT_INITIALIZED = 3,
    DEINITIALIZED = 4,
    NO_DEVICE = 100,
    INVALID_DEVICE = 101,
    INVALID_IMAGE = 200,
    INVALID_CONTEXT = 201,
    NO_BINARY_FOR_GPU = 209,
    INVALID_PTX = 218,
    UNSUPPORTED_PTX_VERSION = 222,
    INVALID_HANDLE = 400,
    NOT_FOUND = 500,
    NOT_READY = 600,
    ILLEGAL_ADDRESS = 700,
    LAUNCH_OUT_OF_RESOURCES = 701,
    CONTEXT_IS_DESTROYED = 709,
    LAUNCH_FAILED = 719,
    NOT_PERMITTED = 800,
    NOT_SUPPORTED = 801,
    UNKNOWN = 999,
};

const char* code_name(int code);         // "CUDA_ERROR_..." or nullptr if unknown
const char* code_description(int code);  // the driver's sentence, or nullptr

// ---- process-wide configuration (read from the environment by cuInit) ----
struct Config {
    int devices = 1;
    uint64_t memory = 8ull << 30;  // bytes per device
    int schedules = 1;             // CUDA_SIM_SCHEDULES
    bool racecheck = false;        // CUDA_SIM_RACECHECK
    bool lazy = true;              // CUDA_SIM_ASYNC=lazy (default) | eager
    bool sticky = true;            // CUDA_SIM_STICKY: findings poison the context as a GPU fault does
    bool strict = true;            // CUDA_SIM_STRICT: cuMemFree of memory that queued work uses is a finding
    bool quiet = false;            // CUDA_SIM_QUIET: findings only through the API, not on stderr
    int ptx_max_major = 9, ptx_max_minor = 0;  // CUDA_SIM_PTX_MAX (a CUDA 13.0 driver: 9.0)
    int sm = 90;                                // the simulated GPU's compute capability
    uint32_t max_param_bytes = 4096;            // CUDA_SIM_MAX_PARAM_BYTES
    uint64_t seed = 0x5eed;                     // CUDA_SIM_SEED (shuffled schedules)
    std::vector<std::string> kernel_libs;       // CUDA_SIM_KERNELS
};
extern Config cfg;

// ---- counters ----
struct Counters {
    std::atomic<uint64_t> launches{0}, cublas{0}, syncs{0}, implicit_syncs{0}, h2d{0}, h2d_bytes{0}, d2h{0},
        d2h_bytes{0}, d2d{0}, d2d_bytes{0}, memsets{0}, allocs{0}, frees{0}, live_allocs{0}, live_bytes{0},
        peak_bytes{0}, module_loads{0}, threads{0}, schedules{0}, findings{0}, injected{0};
};
extern Counters counters;

// ---- findings: what the checks report ----
// Records a finding (printed to stderr unless quiet) and returns its text's stable copy.
const char* report(const std::string& text);
std::string last_finding();

// ---- fault injection ----
// Every entry point calls enter("cuFoo_v2"): it counts the call and returns an injected error
// code (or 0). Configured by CUDA_SIM_FAIL_CALL=name:nth:code[,...], CUDA_SIM_FAIL_ALLOC=n[-m],
// CUDA_SIM_FAIL_LAUNCH=n.
void load_faults();
int enter(const char* fn);

// ---- device memory ----
struct Context;

// Race tracking state of 4 bytes of device or shared memory within one launch (see exec.cpp).
struct Shadow {
    uint32_t epoch;    // the launch (or block, for shared memory) these fields belong to
    uint32_t w_tid;    // last writer: global thread id + 1 (0: none)
    uint32_t w_phase;  // its barrier phase
    uint32_t r_tid;    // latest reader + 1
    uint32_t r_phase;
    uint32_t o_tid;    // earlier readers, folded: one of them + 1 ...
    uint32_t o_block;  // ... their block (if all in one) ...
    uint32_t o_phase;  // ... and their latest phase
    uint32_t o_flags;  // 1: there are earlier readers; 2: in more than one block
};

// One cuMemAlloc: [base, base + size) inside its own mapping, guard pages around it.
struct Allocation {
    uintptr_t base = 0;
    size_t size = 0;
    uintptr_t map_base = 0;
    size_t map_len = 0;
    Context* ctx = nullptr;
    uint64_t id = 0;  // the n-th allocation of the process
    std::atomic<bool> freed{false};
    uint64_t freed_by = 0;  // the n-th cuMemFree that freed it
    // Checking state, owned by the stream worker that runs the current launch.
    uint64_t cow_launch = 0;  // launch whose schedule comparison has a snapshot of it
    std::unique_ptr<Shadow[]> shadow;  // race tracking, one entry per 4 bytes
};

// Live allocation containing [p, p + len), or null. Thread-safe.
std::shared_ptr<Allocation> find_live(uintptr_t p, size_t len);
// Human-readable description of where address p lies (which allocation, how far past its end,
// freed when, or "not device memory").
std::string describe_address(uintptr_t p, size_t len);
int mem_alloc(Context* ctx, size_t bytes, uintptr_t* out);
int mem_free(uintptr_t p);  // the pointer's allocation is unmapped (quarantined)
bool is_pinned(const void* p, size_t len);
int host_alloc(size_t bytes, void** out);
int host_free(void* p);
size_t pinned_size(const void* p);  // 0 if p is not the start of a pinned block
void device_memory_info(Context* ctx, size_t* free_bytes, size_t* total);

// ---- PTX ----
struct PtxParam {
    std::string name;
    uint32_t size = 0, align = 0;
};
struct PtxEntry {
    std::string name;
    std::vector<PtxParam> params;
    uint32_t static_shared = 0;  // bytes of .shared it declares or references
    bool barrier = false;        // has bar.sync / barrier.sync (directly or through .func calls)
    uint32_t line = 0;
};
struct PtxModule {
    int version_major = 0, version_minor = 0;
    int target_sm = 0;
    std::vector<PtxEntry> entries;
};
// Parses PTX text; false with *error set (in ptxas's words) when it cannot.
bool parse_ptx(const char* text, PtxModule* out, std::string* error);

// ---- host kernels (the .cu files compiled for the host, see cuda_sim_device.h) ----
struct HostKernel {
    std::string name;
    void* fn = nullptr;
    void (*thunk)(void*, void**) = nullptr;
    std::vector<uint32_t> sizes;
    std::vector<uint8_t> kinds;  // 0 value, 1 pointer, 2 pointer to const
    std::string library;
    int tls_module = 0;   // the library's TLS module id: its TLS block is the kernels' shared memory
    size_t tls_size = 0;  // and its size
};
void load_kernel_libraries();
const HostKernel* find_host_kernel(const std::string& name);
// What byte `offset` of a kernel library's TLS block (its __shared__ arrays) is, from the
// library's symbol table: "sh[33] (float sh[256] of block_sum_racy)"-like text, or "".
std::string shared_variable(const HostKernel* k, size_t offset, unsigned access_size);
std::string kernel_library_list();

// ---- modules, functions ----
struct Function {
    struct Module* module = nullptr;
    std::string name;
    const HostKernel* host = nullptr;
    PtxEntry ptx;
};
struct Module {
    Context* ctx = nullptr;
    std::vector<std::unique_ptr<Function>> functions;
};

// ---- streams ----
struct Stream;
struct Op {
    std::string what;                  // for messages: "kernel im2col_f32", "cuMemcpyHtoDAsync"
    std::function<void(Stream&)> run;  // executes on the worker; reports failures via fail()
    std::vector<uintptr_t> uses;       // device pointers it touches (for cuMemFree's check)
    std::vector<std::pair<Stream*, uint64_t>> deps;  // wait until those streams reach those seqs
    uint64_t seq = 0;
    struct Event* record = nullptr;  // an event this op completes
};

struct Event {
    Context* ctx = nullptr;
    std::atomic<uint64_t> seq{0};  // stream seq it waits for (0: never recorded = complete)
    Stream* stream = nullptr;
    std::atomic<bool> done{true};
    double time_ms = 0;
};

struct Stream {
    Context* ctx = nullptr;
    bool blocking = true;  // false: CU_STREAM_NON_BLOCKING
    bool legacy = false;   // the NULL stream
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Op> queue;
    uint64_t next_seq = 1;    // seq of the next op enqueued
    uint64_t done_seq = 0;    // every op with seq <= done_seq has completed
    uint64_t flush_to = 0;    // the host waits for ops up to here: run them (lazy mode)
    bool running = false;     // the worker is executing queue.front()
    bool stop = false;
    std::thread worker;

    uint64_t enqueue(Op op);     // returns its seq
    void wait(uint64_t seq);     // runs (if lazy) and waits for every op up to seq
    void wait_all();
    bool uses(uintptr_t p, size_t len, std::string* who);
    void loop();
};

// ---- contexts, devices ----
struct Device {
    int ordinal = 0;
    uint64_t total = 0;
    std::atomic<uint64_t> used{0};
    struct Context* primary = nullptr;
    int primary_refs = 0;
};

struct Context {
    Device* device = nullptr;
    std::unique_ptr<Stream> null_stream;
    std::vector<Stream*> streams;  // created ones (not the null stream)
    std::mutex mu;
    std::atomic<int> sticky{0};   // the error every call returns after a fault (0 = none)
    std::string sticky_msg;
    std::atomic<int> pending_error{0};  // non-sticky mode: returned once by the next sync
    bool destroyed = false;
    void fault(int code, const std::string& msg);  // called by workers
    int take_error();                              // the error a synchronising call returns
    std::vector<Stream*> all_streams();
};

// The stream a CUstream handle names in context c (NULL and the legacy / per-thread handles
// mean c's NULL stream), or null with *err set.
Stream* resolve_stream(void* handle, Context* c, int* err);
// Queues op on s, after what the legacy-stream rules make it wait for; returns its seq.
uint64_t submit(Stream* s, Op op);
// Checks at execution time that [p, p + n) is still live device memory of c's device; if not,
// faults c with CUDA_ERROR_ILLEGAL_ADDRESS naming `what` and returns false.
bool check_live(Context* c, uintptr_t p, size_t n, const char* what, const char* role);

// The most recent finding behind error `code`, as cuGetErrorString shows it (or null).
void set_detail(int code, const std::string& msg);
const char* detail(int code);

extern std::mutex g_mu;  // devices, contexts, streams lists
extern std::vector<std::unique_ptr<Device>> g_devices;
extern std::atomic<bool> g_initialized;
Context* current_context();

// ---- the executor (exec.cpp) ----
struct LaunchSpec {
    Function* fn = nullptr;
    unsigned grid[3] = {1, 1, 1};
    unsigned block[3] = {1, 1, 1};
    std::vector<uint64_t> storage;   // parameter bytes (8-byte aligned slots)
    std::vector<uint32_t> offsets;   // byte offset of each parameter in storage
    int schedules = 1;
    bool racecheck = false;
    uint64_t id = 0;
};
// Runs a whole grid; returns 0, or an error code with *msg set (the launch's finding).
int run_grid(LaunchSpec& spec, Context* ctx, std::string* msg);

// Thread-local check settings of the calling host thread (cuSimSetThreadChecks).
int thread_schedules();
bool thread_racecheck();

// ---- helpers ----
std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t now_ns();

}  // namespace sim
