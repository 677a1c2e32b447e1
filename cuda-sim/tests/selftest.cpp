// cuda-sim's own tests, against the driver and cuBLAS API alone (no smallgrad): the kernels of
// selftest.cu, each correct one giving the right answer and each planted bug caught with the
// error and message the simulator promises.
//
//   make -C cuda-sim run-selftest NVCC=...    (runs with CUDA_SIM_STICKY=0 CUDA_SIM_RACECHECK=1)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../include/cuda_sim.h"

extern "C" {
typedef void* CUcontext;
typedef void* CUmodule;
typedef void* CUfunction;
typedef void* CUstream;
typedef unsigned long long CUdeviceptr;
int cuInit(unsigned);
int cuDeviceGetCount(int*);
int cuDevicePrimaryCtxRetain(CUcontext*, int);
int cuCtxSetCurrent(CUcontext);
int cuCtxGetCurrent(CUcontext*);
int cuCtxPushCurrent_v2(CUcontext);
int cuCtxPopCurrent_v2(CUcontext*);
int cuCtxSynchronize(void);
int cuModuleLoadData(CUmodule*, const void*);
int cuModuleLoadDataEx(CUmodule*, const void*, unsigned, int*, void**);
int cuModuleGetFunction(CUfunction*, CUmodule, const char*);
int cuMemAlloc_v2(CUdeviceptr*, size_t);
int cuMemFree_v2(CUdeviceptr);
int cuMemAllocHost_v2(void**, size_t);
int cuMemFreeHost(void*);
int cuMemcpyHtoD_v2(CUdeviceptr, const void*, size_t);
int cuMemcpyDtoH_v2(void*, CUdeviceptr, size_t);
int cuMemcpyHtoDAsync_v2(CUdeviceptr, const void*, size_t, CUstream);
int cuMemcpyDtoHAsync_v2(void*, CUdeviceptr, size_t, CUstream);
int cuMemsetD8_v2(CUdeviceptr, unsigned char, size_t);
int cuStreamCreate(CUstream*, unsigned);
int cuStreamSynchronize(CUstream);
int cuLaunchKernel(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                   void**, void**);
int cuGetErrorString(int, const char**);
int cublasCreate_v2(void**);
int cublasSetStream_v2(void*, CUstream);
int cublasSetMathMode(void*, int);
int cublasSgemmStridedBatched(void*, int, int, int, int, int, const float*, const float*, int, long long,
                              const float*, int, long long, const float*, float*, int, long long, int);
int cublasDgemmStridedBatched(void*, int, int, int, int, int, const double*, const double*, int, long long,
                              const double*, int, long long, const double*, double*, int, long long, int);
}

static int failures = 0, passed = 0;
static std::string current;

#define CHECK(cond)                                                                                    \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            std::printf("  FAILED %s:%d in %s: %s\n", __FILE__, __LINE__, current.c_str(), #cond);      \
            ++failures;                                                                                \
            return;                                                                                    \
        }                                                                                              \
    } while (0)
#define CU(call) CHECK((call) == 0)

static std::string finding() {
    char buf[4096];
    cuSimLastFinding(buf, sizeof buf);
    return buf;
}

static bool has(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

static std::string ptx_text;
static CUmodule mod;

static CUfunction fn(const char* name) {
    CUfunction f = nullptr;
    if (cuModuleGetFunction(&f, mod, name) != 0) {
        std::printf("  no function %s\n", name);
        std::exit(1);
    }
    return f;
}

static CUdeviceptr upload(const void* p, size_t n) {
    CUdeviceptr d = 0;
    if (cuMemAlloc_v2(&d, n) != 0 || cuMemcpyHtoD_v2(d, p, n) != 0) std::exit(1);
    return d;
}

static int launch(const char* name, unsigned grid, unsigned block, std::vector<void*> args) {
    return cuLaunchKernel(fn(name), grid, 1, 1, block, 1, 1, 0, nullptr, args.data(), nullptr);
}

// The error a kernel's launch left, as the next synchronisation returns it, and the finding.
static int sync_error() { return cuStreamSynchronize(nullptr); }

static void test_block_sum_ok() {
    std::vector<float> x(1000);
    for (int i = 0; i < 1000; ++i) x[i] = float(i % 7);
    CUdeviceptr dx = upload(x.data(), x.size() * 4), dout;
    CU(cuMemAlloc_v2(&dout, 4 * 4));
    long long n = 1000;
    CU(launch("block_sum_ok", 4, 256, {&dx, &dout, &n}));
    CU(sync_error());
    float out[4];
    CU(cuMemcpyDtoH_v2(out, dout, sizeof out));
    for (int b = 0; b < 4; ++b) {
        float s = 0;
        for (int i = b * 256; i < std::min(1000, b * 256 + 256); ++i) s += x[i];
        CHECK(out[b] == s);
    }
    cuMemFree_v2(dx);
    cuMemFree_v2(dout);
}

// Expects the last launch to be caught: error `code` at the next sync, and a finding with `what`.
static void expect_caught(int code, const char* what) {
    int r = sync_error();
    std::string f = finding();
    if (r != code || !has(f, what)) std::printf("  got error %d, finding: %s\n", r, f.c_str());
    CHECK(r == code);
    CHECK(has(f, what));
    CU(sync_error());  // delivered once (CUDA_SIM_STICKY=0): the context works again
}

static void test_block_sum_racy(int schedules, int racecheck, const char* what) {
    cuSimSetThreadChecks(schedules, racecheck);
    std::vector<float> x(512, 1.0f);
    for (int i = 0; i < 512; ++i) x[i] = float(i);
    CUdeviceptr dx = upload(x.data(), x.size() * 4), dout;
    CU(cuMemAlloc_v2(&dout, 8));
    long long n = 512;
    CU(launch("block_sum_racy", 2, 256, {&dx, &dout, &n}));
    expect_caught(719, what);
    cuSimSetThreadChecks(-1, -1);
}

static void test_scatter_add() {
    std::vector<float> x(64, 1.0f);
    std::vector<long long> idx(64);
    for (int i = 0; i < 64; ++i) idx[i] = i % 4;  // each slot hit 16 times
    CUdeviceptr dx = upload(x.data(), 256), di = upload(idx.data(), 512), dout;
    CU(cuMemAlloc_v2(&dout, 16));
    CU(cuMemsetD8_v2(dout, 0, 16));
    long long n = 64;
    // Schedules alone cannot see it: every serial order adds the same 16 ones.
    cuSimSetThreadChecks(3, 0);
    CU(launch("scatter_add", 1, 64, {&dx, &di, &dout, &n}));
    CU(sync_error());
    float out[4];
    CU(cuMemcpyDtoH_v2(out, dout, 16));
    CHECK(out[0] == 16.0f);
    // Tracking does.
    cuSimSetThreadChecks(1, 1);
    CU(launch("scatter_add", 1, 64, {&dx, &di, &dout, &n}));
    expect_caught(719, "race in kernel scatter_add");
    cuSimSetThreadChecks(-1, -1);
}

static void test_last_writer() {
    CUdeviceptr d;
    CU(cuMemAlloc_v2(&d, 8));
    cuSimSetThreadChecks(3, 0);
    CU(launch("last_writer_wins", 2, 32, {&d}));
    expect_caught(719, "different results");
    cuSimSetThreadChecks(1, 1);
    CU(launch("last_writer_wins", 2, 32, {&d}));
    expect_caught(719, "race in kernel last_writer_wins");
    cuSimSetThreadChecks(-1, -1);
}

static void test_barriers() {
    CUdeviceptr d;
    CU(cuMemAlloc_v2(&d, 64 * 4));
    CU(launch("divergent_barrier", 1, 64, {&d}));
    expect_caught(719, "returned while 16 threads wait at __syncthreads()");
    CU(launch("split_barriers", 1, 64, {&d}));
    expect_caught(719, "waits at __syncthreads()");
}

static void test_grid_stride() {
    const long long n = 10007;
    std::vector<float> x(n);
    for (long long i = 0; i < n; ++i) x[i] = float(i) * 0.5f;
    CUdeviceptr dx = upload(x.data(), n * 4), dy;
    CU(cuMemAlloc_v2(&dy, n * 4));
    long long nn = n;
    CU(launch("copy", 7, 128, {&dx, &dy, &nn}));
    std::vector<float> y(n);
    CU(cuMemcpyDtoH_v2(y.data(), dy, n * 4));
    CHECK(std::memcmp(x.data(), y.data(), n * 4) == 0);
}

static void test_bad_accesses() {
    CUdeviceptr dx, dy;
    CU(cuMemAlloc_v2(&dx, 100 * 4));  // 400 bytes: not a multiple of 256, so the end is in slack
    CU(cuMemAlloc_v2(&dy, 100 * 4));
    long long n = 100;
    CU(launch("read_one_past", 1, 128, {&dx, &dy, &n}));
    expect_caught(700, "past the end of allocation");
    CU(launch("write_before", 1, 32, {&dy}));
    expect_caught(700, "before the start of allocation");
    static float host[64];
    CUdeviceptr h = reinterpret_cast<uintptr_t>(host);
    long long m = 64;
    CU(launch("copy", 1, 64, {&h, &dy, &m}));
    expect_caught(700, "not device memory");
    // A launch queued (not yet run: lazy streams), then its input freed without synchronising.
    CUdeviceptr tmp;
    CU(cuMemAlloc_v2(&tmp, 256));
    CU(launch("copy", 1, 64, {&tmp, &dy, &m}));
    CU(cuMemFree_v2(tmp));
    expect_caught(700, "use after free");
}

static void test_shared_garbage() {
    CUdeviceptr d;
    CU(cuMemAlloc_v2(&d, 32 * 4));
    CU(launch("shared_garbage", 1, 32, {&d}));
    uint32_t out[32];
    CU(cuMemcpyDtoH_v2(out, d, sizeof out));
    float one = 1.0f;
    uint32_t one_bits;
    std::memcpy(&one_bits, &one, 4);
    for (int i = 0; i < 32; ++i) CHECK(out[i] == (i < 16 ? one_bits : 0xFFFFFFFFu));  // garbage: a NaN
}

static void test_cross_block() {
    CUdeviceptr flag, out;
    CU(cuMemAlloc_v2(&flag, 4));
    CU(cuMemAlloc_v2(&out, 4 * 4));
    CU(launch("cross_block", 4, 32, {&flag, &out}));
    expect_caught(719, "race in kernel cross_block");
}

static void test_coords3() {
    unsigned gx = 2, gy = 3, bx = 4, by = 2, bz = 2;
    size_t threads = gx * gy * bx * by * bz;
    CUdeviceptr d;
    CU(cuMemAlloc_v2(&d, threads * 16));
    void* args[] = {&d};
    CU(cuLaunchKernel(fn("coords3"), gx, gy, 1, bx, by, bz, 0, nullptr, args, nullptr));
    std::vector<int> v(threads * 4);
    CU(cuMemcpyDtoH_v2(v.data(), d, v.size() * 4));
    size_t g = 0;
    for (unsigned yb = 0; yb < gy; ++yb)
        for (unsigned xb = 0; xb < gx; ++xb)
            for (unsigned z = 0; z < bz; ++z)
                for (unsigned y = 0; y < by; ++y)
                    for (unsigned x = 0; x < bx; ++x, ++g) {
                        CHECK(v[4 * g] == int(x + 10 * y + 100 * z));
                        CHECK(v[4 * g + 1] == int(xb + 10 * yb));
                        CHECK(v[4 * g + 2] == int(bx * by * bz));
                        CHECK(v[4 * g + 3] == int(gx * gy));
                    }
}

static void test_struct_param() {
    std::vector<double> x = {1, 2, 3, 4, 5};
    CUdeviceptr dx = upload(x.data(), 40), dy;
    CU(cuMemAlloc_v2(&dy, 40));
    struct {
        double a, b;
        long long n;
    } p{2.0, -1.0, 5};
    CU(launch("affine", 1, 32, {&dx, &dy, &p}));
    p.a = 100;  // the driver copied the parameters at launch
    double y[5];
    CU(cuMemcpyDtoH_v2(y, dy, 40));
    for (int i = 0; i < 5; ++i) CHECK(y[i] == 2.0 * x[i] - 1.0);
}

static void test_limits() {
    CUdeviceptr d;
    CU(cuMemAlloc_v2(&d, 4096));
    void* args[] = {&d};
    CUfunction f = fn("shared_garbage");
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1025, 1, 1, 0, nullptr, args, nullptr) == 1);
    CHECK(cuLaunchKernel(f, 1, 1, 1, 32, 32, 2, 0, nullptr, args, nullptr) == 1);  // 2048 threads
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 65, 0, nullptr, args, nullptr) == 1);
    CHECK(cuLaunchKernel(f, 1, 65536, 1, 32, 1, 1, 0, nullptr, args, nullptr) == 1);
    CHECK(cuLaunchKernel(f, 1, 1, 65536, 32, 1, 1, 0, nullptr, args, nullptr) == 1);
    CHECK(cuLaunchKernel(f, 0, 1, 1, 32, 1, 1, 0, nullptr, args, nullptr) == 1);
    CHECK(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 48 * 1024, nullptr, args, nullptr) == 1);  // + 128 static
    CU(sync_error());
}

static std::string replace(std::string s, const std::string& from, const std::string& to) {
    size_t p = s.find(from);
    if (p == std::string::npos) {
        std::printf("  pattern not in the PTX: %s\n", from.c_str());
        std::exit(1);
    }
    return s.replace(p, from.size(), to);
}

static int load_with_log(const std::string& text, std::string* log) {
    char err[8192] = {0};
    int options[] = {5, 6};  // CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
    void* values[] = {err, reinterpret_cast<void*>(uintptr_t(sizeof err))};
    CUmodule m;
    int r = cuModuleLoadDataEx(&m, text.c_str(), 2, options, values);
    *log = err;
    return r;
}

static void test_module_errors() {
    std::string log;
    CHECK(load_with_log(replace(ptx_text, ".version 9.0", ".version 9.1"), &log) == 222);
    CHECK(has(log, "Unsupported .version 9.1"));
    CHECK(load_with_log(replace(ptx_text, ".entry copy(", ".entry no_such_kernel("), &log) == 218);
    CHECK(has(log, "entry 'no_such_kernel'") && has(log, "no host build"));
    CHECK(load_with_log(replace(ptx_text, "affine_param_2[24]", "affine_param_2[16]"), &log) == 218);
    CHECK(has(log, "parameter 2 of entry 'affine' is 16 bytes in the PTX but 24"));
    std::string big = replace(ptx_text, ".entry shared_garbage(", ".entry shared_garbage(");
    size_t body = big.find('{', big.find(".entry shared_garbage("));
    big.insert(body + 1, "\n\t.shared .align 4 .b8 huge[65536];\n\tst.shared.u32 [huge], 0;\n");
    CHECK(load_with_log(big, &log) == 218);
    CHECK(has(log, "uses too much shared data"));
    unsigned char cubin[16] = {0x7f, 'E', 'L', 'F'};
    CUmodule m;
    CHECK(cuModuleLoadData(&m, cubin) == 801);
}

static void test_contexts() {
    int no_ctx = -1, pushed = -1;
    CUcontext mine = nullptr;
    cuCtxGetCurrent(&mine);
    std::thread t([&] {
        CUdeviceptr d;
        no_ctx = cuMemAlloc_v2(&d, 64);  // a fresh thread has no current context
        if (cuCtxPushCurrent_v2(mine) == 0) {
            pushed = cuMemAlloc_v2(&d, 64);
            cuMemFree_v2(d);
            CUcontext popped = nullptr;
            cuCtxPopCurrent_v2(&popped);
        }
    });
    t.join();
    CHECK(no_ctx == 201);
    CHECK(pushed == 0);
}

static void test_async_copies() {
    CUstream s;
    CU(cuStreamCreate(&s, 1));  // CU_STREAM_NON_BLOCKING
    std::vector<float> x(256);
    for (int i = 0; i < 256; ++i) x[i] = float(i);
    CUdeviceptr d = upload(x.data(), 1024);
    float* pinned = nullptr;
    CU(cuMemAllocHost_v2(reinterpret_cast<void**>(&pinned), 1024));
    CU(cuMemcpyDtoHAsync_v2(pinned, d, 1024, s));
    uint32_t early;
    std::memcpy(&early, &pinned[5], 4);
    CHECK(early == 0xFFFFFFFFu);  // read before the stream was synchronised: garbage
    CU(cuStreamSynchronize(s));
    CHECK(pinned[5] == 5.0f);
    std::vector<float> pageable(256, 0.0f);
    CU(cuMemcpyDtoHAsync_v2(pageable.data(), d, 1024, s));
    CHECK(pageable[7] == 7.0f);  // to pageable memory the call returns when the copy is done
    // Freeing pinned memory that a queued copy still writes: reported, and waited for (the copy
    // must not land in freed host memory).
    CU(cuMemcpyDtoHAsync_v2(pinned, d, 1024, s));
    CU(cuMemFreeHost(pinned));
    CHECK(has(finding(), "cuMemFreeHost of pinned memory"));
}

static void test_cublas() {
    void* h;
    CU(cublasCreate_v2(&h));
    // column-major C (2x3) = A (2x4) B (4x3)
    double A[8], B[12], C[6];
    for (int i = 0; i < 8; ++i) A[i] = i + 1;
    for (int i = 0; i < 12; ++i) B[i] = 0.5 * i - 2;
    CUdeviceptr da = upload(A, sizeof A), db = upload(B, sizeof B), dc;
    CU(cuMemAlloc_v2(&dc, sizeof C));
    double one = 1, zero = 0;
    CHECK(cublasDgemmStridedBatched(h, 0, 0, 2, 3, 4, &one, (double*)da, 1, 0, (double*)db, 4, 0, &zero, (double*)dc,
                                    2, 0, 1) == 7);  // lda < m
    CU(cublasDgemmStridedBatched(h, 0, 0, 2, 3, 4, &one, (double*)da, 2, 0, (double*)db, 4, 0, &zero, (double*)dc, 2,
                                 0, 1));
    CU(cuMemcpyDtoH_v2(C, dc, sizeof C));
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j) {
            double s = 0;
            for (int p = 0; p < 4; ++p) s += A[i + 2 * p] * B[p + 4 * j];
            CHECK(C[i + 2 * j] == s);
        }
    // An operand that runs past its allocation is caught when the product runs.
    CU(cublasDgemmStridedBatched(h, 0, 0, 2, 3, 4, &one, (double*)da, 2, 8, (double*)db, 4, 0, &zero, (double*)dc, 2,
                                 0, 2));
    expect_caught(700, "operand A");
    // TF32: inputs keep 10 mantissa bits.
    float a = 1.0f + 1.0f / 4096, b = 1.0f, c = 0;
    CUdeviceptr fa = upload(&a, 4), fb = upload(&b, 4), fc;
    CU(cuMemAlloc_v2(&fc, 4));
    float onef = 1, zerof = 0;
    CU(cublasSetMathMode(h, 3));
    CU(cublasSgemmStridedBatched(h, 0, 0, 1, 1, 1, &onef, (float*)fa, 1, 0, (float*)fb, 1, 0, &zerof, (float*)fc, 1, 0,
                                 1));
    CU(cuMemcpyDtoH_v2(&c, fc, 4));
    CHECK(c == 1.0f);
    CU(cublasSetMathMode(h, 0));
    CU(cublasSgemmStridedBatched(h, 0, 0, 1, 1, 1, &onef, (float*)fa, 1, 0, (float*)fb, 1, 0, &zerof, (float*)fc, 1, 0,
                                 1));
    CU(cuMemcpyDtoH_v2(&c, fc, 4));
    CHECK(c == a);
    // Without cublasSetStream the product goes to the NULL stream, which a non-blocking stream
    // does not wait for: a kernel there reads C before the product has run.
    CUstream s;
    CU(cuStreamCreate(&s, 1));
    CUdeviceptr dd;
    CU(cuMemAlloc_v2(&dd, sizeof C));
    CU(cuMemsetD8_v2(dc, 0xFF, sizeof C));
    CU(cuCtxSynchronize());
    CU(cublasDgemmStridedBatched(h, 0, 0, 2, 3, 4, &one, (double*)da, 2, 0, (double*)db, 4, 0, &zero, (double*)dc, 2,
                                 0, 1));
    long long n6 = 12;  // 6 doubles copied as 12 floats
    void* args[] = {&dc, &dd, &n6};
    CU(cuLaunchKernel(fn("copy"), 1, 1, 1, 32, 1, 1, 0, s, args, nullptr));
    CU(cuStreamSynchronize(s));
    uint64_t bits;
    CU(cuMemcpyDtoHAsync_v2(&bits, dd, 8, s));
    CHECK(bits == ~0ull);
    CU(cuCtxSynchronize());
    // Bound to the stream, it is ordered.
    CU(cublasSetStream_v2(h, s));
    CU(cuMemsetD8_v2(dc, 0xFF, sizeof C));
    CU(cuCtxSynchronize());
    CU(cublasDgemmStridedBatched(h, 0, 0, 2, 3, 4, &one, (double*)da, 2, 0, (double*)db, 4, 0, &zero, (double*)dc, 2,
                                 0, 1));
    CU(cuLaunchKernel(fn("copy"), 1, 1, 1, 32, 1, 1, 0, s, args, nullptr));
    double D[6];
    CU(cuMemcpyDtoHAsync_v2(D, dd, sizeof D, s));
    CHECK(std::memcmp(D, C, sizeof D) == 0);
}

static void test_counters() {
    cuSimCounters before{}, after{};
    cuSimGetCounters(&before, sizeof before);
    CUdeviceptr d;
    CU(cuMemAlloc_v2(&d, 1000));
    long long n = 10;
    CU(launch("copy", 1, 32, {&d, &d, &n}));
    float host[10];
    CU(cuMemcpyDtoH_v2(host, d, 40));
    CU(cuMemFree_v2(d));
    cuSimGetCounters(&after, sizeof after);
    CHECK(after.size == sizeof(cuSimCounters));
    CHECK(after.launches == before.launches + 1);
    CHECK(after.allocs == before.allocs + 1 && after.frees == before.frees + 1);
    CHECK(after.d2h_copies == before.d2h_copies + 1 && after.d2h_bytes == before.d2h_bytes + 40);
    CHECK(after.threads_run >= before.threads_run + 32);
    CHECK(after.live_allocs == before.live_allocs);
}

#define RUN(call)                                        \
    do {                                                 \
        current = #call;                                 \
        int f0 = failures;                               \
        call;                                            \
        if (failures == f0) {                            \
            ++passed;                                    \
            std::printf("ok - %s\n", current.c_str());   \
        }                                                \
    } while (0)

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: selftest SELFTEST.ptx\n");
        return 2;
    }
    std::ifstream in(argv[1]);
    std::stringstream ss;
    ss << in.rdbuf();
    ptx_text = ss.str();
    CUcontext ctx;
    int count = 0;
    if (cuInit(0) != 0 || cuDeviceGetCount(&count) != 0 || count < 1 || cuDevicePrimaryCtxRetain(&ctx, 0) != 0 ||
        cuCtxSetCurrent(ctx) != 0 || cuModuleLoadData(&mod, ptx_text.c_str()) != 0) {
        std::printf("cannot set up the simulator: %s\n", finding().c_str());
        return 1;
    }
    RUN(test_block_sum_ok());
    RUN(test_block_sum_racy(1, 1, "race in kernel block_sum_racy"));
    RUN(test_block_sum_racy(3, 0, "different results when its threads and blocks run in reverse order"));
    RUN(test_scatter_add());
    RUN(test_last_writer());
    RUN(test_barriers());
    RUN(test_grid_stride());
    RUN(test_bad_accesses());
    RUN(test_shared_garbage());
    RUN(test_cross_block());
    RUN(test_coords3());
    RUN(test_struct_param());
    RUN(test_limits());
    RUN(test_module_errors());
    RUN(test_contexts());
    RUN(test_async_copies());
    RUN(test_cublas());
    RUN(test_counters());
    std::printf("%d passed, %d failed\n", passed, failures);
    return failures ? 1 : 0;
}
