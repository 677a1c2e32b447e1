// The simulated cuBLAS (libcublas.so.13): handles bound to a context and a stream, math and
// pointer modes, and column-major GEMM (plain and strided-batched, f32 and f64) with cuBLAS's
// argument checks and status codes. The product runs on the handle's stream like any other
// work, so it is ordered (or not) exactly as on a GPU: a handle without cublasSetStream works on
// the NULL stream.
//
// Arithmetic: each C element sums its k products in order with fused multiply-adds (as GPU
// GEMMs use FMA), in the element type; in CUBLAS_TF32_TENSOR_OP_MATH mode the f32 inputs are
// first rounded to TF32 (10 mantissa bits), as tensor cores do.
#include <cmath>
#include <cstring>
#include <set>

#include "sim.h"

using namespace sim;

extern "C" int cuInit(unsigned);
extern "C" int cuDevicePrimaryCtxRetain(Context**, int);
extern "C" int cuCtxSetCurrent(Context*);

namespace {

enum Status {
    BLAS_SUCCESS = 0,
    BLAS_NOT_INITIALIZED = 1,
    BLAS_ALLOC_FAILED = 3,
    BLAS_BAD_VALUE = 7,
    BLAS_ARCH_MISMATCH = 8,
    BLAS_MAPPING_ERROR = 11,
    BLAS_EXECUTION_FAILED = 13,
    BLAS_INTERNAL_ERROR = 14,
    BLAS_NOT_SUPPORTED = 15,
    BLAS_LICENSE_ERROR = 16,
};

struct Handle {
    Context* ctx = nullptr;
    void* stream = nullptr;
    int math_mode = 0;     // CUBLAS_DEFAULT_MATH
    int pointer_mode = 0;  // CUBLAS_POINTER_MODE_HOST
};

std::mutex handles_mu;
std::set<Handle*> handles;

Handle* live(void* h) {
    std::lock_guard<std::mutex> lock(handles_mu);
    auto* p = static_cast<Handle*>(h);
    return handles.count(p) ? p : nullptr;
}

float to_tf32(float x) {
    uint32_t b;
    std::memcpy(&b, &x, 4);
    if ((b & 0x7f800000u) != 0x7f800000u) {  // finite: round to nearest even at bit 13
        b += 0xfffu + ((b >> 13) & 1u);
        b &= ~0x1fffu;
    }
    std::memcpy(&x, &b, 4);
    return x;
}

inline float fma_(float a, float b, float c) { return std::fmaf(a, b, c); }
inline double fma_(double a, double b, double c) { return std::fma(a, b, c); }

// The element range [lo, hi) an operand of `rows x cols` (leading dimension ld) spans over the
// batch.
void span(long long rows, long long cols, long long ld, long long stride, long long batch, long long* lo,
          long long* hi) {
    long long last = (rows - 1) + (cols - 1) * ld;
    long long s0 = 0, s1 = (batch - 1) * stride;
    *lo = std::min(s0, s1);
    *hi = std::max(s0, s1) + last + 1;
}

template <typename T>
int gemm(const char* name, void* hv, int transa, int transb, int m, int n, int k, const T* alpha, const T* a, int lda,
         long long stride_a, const T* b, int ldb, long long stride_b, const T* beta, T* c, int ldc,
         long long stride_c, int batch) {
    if (int injected = sim::enter(name)) return injected;
    Handle* h = live(hv);
    if (!h) return BLAS_NOT_INITIALIZED;
    auto valid_op = [](int t) { return t == 0 || t == 1 || t == 2; };
    if (!valid_op(transa) || !valid_op(transb) || m < 0 || n < 0 || k < 0 || batch < 0) return BLAS_BAD_VALUE;
    bool ta = transa != 0, tb = transb != 0;
    if (lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m)) return BLAS_BAD_VALUE;
    if (!alpha || !beta) return BLAS_BAD_VALUE;
    Context* ctx = current_context();
    if (ctx != h->ctx) {
        report(strprintf("%s: the handle belongs to device %d's context, but the calling thread's current context "
                         "is %s (make the handle's device current first)",
                         name, h->ctx->device->ordinal, ctx ? "another one" : "none"));
        return BLAS_EXECUTION_FAILED;
    }
    if (cfg.sticky && ctx->sticky.load()) return BLAS_EXECUTION_FAILED;
    if (m == 0 || n == 0 || batch == 0) return BLAS_SUCCESS;
    int err = 0;
    Stream* s = resolve_stream(h->stream, ctx, &err);
    if (!s) return BLAS_EXECUTION_FAILED;
    // The scalars: read now from host memory (host pointer mode), or from device memory when
    // the product runs.
    bool device_scalars = h->pointer_mode == 1;
    T al = device_scalars ? T(0) : *alpha, be = device_scalars ? T(0) : *beta;
    bool tf32 = sizeof(T) == 4 && (h->math_mode & 0xf) == 3;  // CUBLAS_TF32_TENSOR_OP_MATH
    counters.cublas++;
    Op op;
    op.what = name;
    op.uses = {reinterpret_cast<uintptr_t>(a), reinterpret_cast<uintptr_t>(b), reinterpret_cast<uintptr_t>(c)};
    op.run = [=](Stream&) {
        long long lo[3], hi[3];
        span(ta ? k : m, ta ? m : k, lda, stride_a, batch, &lo[0], &hi[0]);
        span(tb ? n : k, tb ? k : n, ldb, stride_b, batch, &lo[1], &hi[1]);
        span(m, n, ldc, stride_c, batch, &lo[2], &hi[2]);
        const void* base[3] = {a, b, c};
        const char* role[3] = {"A", "B", "C"};
        for (int i = 0; i < 3; ++i) {
            uintptr_t p = reinterpret_cast<uintptr_t>(base[i]) + lo[i] * sizeof(T);
            std::string r = strprintf("operand %s", role[i]);
            if (!check_live(ctx, p, (hi[i] - lo[i]) * sizeof(T), name, r.c_str())) return;
        }
        T alv = al, bev = be;
        if (device_scalars) {
            if (!check_live(ctx, reinterpret_cast<uintptr_t>(alpha), sizeof(T), name, "alpha") ||
                !check_live(ctx, reinterpret_cast<uintptr_t>(beta), sizeof(T), name, "beta"))
                return;
            alv = *alpha;
            bev = *beta;
        }
        // op(A) as a column-major m x k block and op(B) as k x n (TF32-rounded if asked),
        // then for each column of C: k fused multiply-adds per element, in order of p.
        std::vector<T> ap(size_t(m) * k), bp(size_t(k) * n), acc(m);
        auto round = [tf32](T v) { return tf32 ? static_cast<T>(to_tf32(static_cast<float>(v))) : v; };
        for (long long bi = 0; bi < batch; ++bi) {
            const T* A = a + bi * stride_a;
            const T* B = b + bi * stride_b;
            T* C = c + bi * stride_c;
            for (int p = 0; p < k; ++p)
                for (int r = 0; r < m; ++r)
                    ap[r + size_t(p) * m] = round(ta ? A[p + static_cast<long long>(r) * lda]
                                                     : A[r + static_cast<long long>(p) * lda]);
            for (int j = 0; j < n; ++j)
                for (int p = 0; p < k; ++p)
                    bp[p + size_t(j) * k] = round(tb ? B[j + static_cast<long long>(p) * ldb]
                                                     : B[p + static_cast<long long>(j) * ldb]);
            for (int j = 0; j < n; ++j) {
                std::fill(acc.begin(), acc.end(), T(0));
                for (int p = 0; p < k; ++p) {
                    const T bv = bp[p + size_t(j) * k];
                    const T* col = ap.data() + size_t(p) * m;
                    for (int r = 0; r < m; ++r) acc[r] = fma_(col[r], bv, acc[r]);
                }
                T* out = C + static_cast<long long>(j) * ldc;
                for (int r = 0; r < m; ++r)  // beta = 0: C is not read (it may hold garbage)
                    out[r] = bev == T(0) ? alv * acc[r] : fma_(alv, acc[r], bev * out[r]);
            }
        }
    };
    submit(s, std::move(op));
    return BLAS_SUCCESS;
}

}  // namespace

typedef void* cublasHandle_t;

SIM_EXPORT int cublasCreate_v2(cublasHandle_t* out) {
    if (int injected = sim::enter("cublasCreate_v2")) return injected;
    if (!out) return BLAS_BAD_VALUE;
    Context* ctx = current_context();
    if (!ctx) {
        // As the runtime: without a current context, device 0's primary context.
        if (cuInit(0) != 0 || cuDevicePrimaryCtxRetain(&ctx, 0) != 0 || cuCtxSetCurrent(ctx) != 0)
            return BLAS_NOT_INITIALIZED;
    }
    auto* h = new Handle();
    h->ctx = ctx;
    std::lock_guard<std::mutex> lock(handles_mu);
    handles.insert(h);
    *out = h;
    return BLAS_SUCCESS;
}

SIM_EXPORT int cublasDestroy_v2(cublasHandle_t hv) {
    if (int injected = sim::enter("cublasDestroy_v2")) return injected;
    Handle* h = live(hv);
    if (!h) return BLAS_NOT_INITIALIZED;
    std::lock_guard<std::mutex> lock(handles_mu);
    handles.erase(h);
    delete h;
    return BLAS_SUCCESS;
}

SIM_EXPORT int cublasGetVersion_v2(cublasHandle_t hv, int* version) {
    if (!live(hv)) return BLAS_NOT_INITIALIZED;
    if (!version) return BLAS_BAD_VALUE;
    *version = 130000;
    return BLAS_SUCCESS;
}

SIM_EXPORT int cublasSetStream_v2(cublasHandle_t hv, void* stream) {
    if (int injected = sim::enter("cublasSetStream_v2")) return injected;
    Handle* h = live(hv);
    if (!h) return BLAS_NOT_INITIALIZED;
    int err = 0;
    if (!resolve_stream(stream, h->ctx, &err)) return BLAS_BAD_VALUE;
    h->stream = stream;
    return BLAS_SUCCESS;
}

SIM_EXPORT int cublasGetStream_v2(cublasHandle_t hv, void** stream) {
    Handle* h = live(hv);
    if (!h) return BLAS_NOT_INITIALIZED;
    if (!stream) return BLAS_BAD_VALUE;
    *stream = h->stream;
    return BLAS_SUCCESS;
}

SIM_EXPORT int cublasSetMathMode(cublasHandle_t hv, int mode) {
    if (int injected = sim::enter("cublasSetMathMode")) return injected;
    Handle* h = live(hv);
    if (!h) return BLAS_NOT_INITIALIZED;
    int base = mode & 0xf;
    if ((base != 0 && base != 1 && base != 2 && base != 3) || (mode & ~0x1f)) return BLAS_BAD_VALUE;
    h->math_mode = mode;
    return BLAS_SUCCESS;
}

SIM_EXPORT int cublasGetMathMode(cublasHandle_t hv, int* mode) {
    Handle* h = live(hv);
    if (!h) return BLAS_NOT_INITIALIZED;
    if (!mode) return BLAS_BAD_VALUE;
    *mode = h->math_mode;
    return BLAS_SUCCESS;
}

SIM_EXPORT int cublasSetPointerMode_v2(cublasHandle_t hv, int mode) {
    Handle* h = live(hv);
    if (!h) return BLAS_NOT_INITIALIZED;
    if (mode != 0 && mode != 1) return BLAS_BAD_VALUE;
    h->pointer_mode = mode;
    return BLAS_SUCCESS;
}

SIM_EXPORT int cublasGetPointerMode_v2(cublasHandle_t hv, int* mode) {
    Handle* h = live(hv);
    if (!h) return BLAS_NOT_INITIALIZED;
    if (!mode) return BLAS_BAD_VALUE;
    *mode = h->pointer_mode;
    return BLAS_SUCCESS;
}

SIM_EXPORT int cublasSgemmStridedBatched(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float* alpha,
                                         const float* a, int lda, long long sa, const float* b, int ldb, long long sb,
                                         const float* beta, float* c, int ldc, long long sc, int batch) {
    return gemm<float>("cublasSgemmStridedBatched", h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                       sc, batch);
}

SIM_EXPORT int cublasDgemmStridedBatched(cublasHandle_t h, int ta, int tb, int m, int n, int k, const double* alpha,
                                         const double* a, int lda, long long sa, const double* b, int ldb,
                                         long long sb, const double* beta, double* c, int ldc, long long sc,
                                         int batch) {
    return gemm<double>("cublasDgemmStridedBatched", h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc,
                        sc, batch);
}

SIM_EXPORT int cublasSgemm_v2(cublasHandle_t h, int ta, int tb, int m, int n, int k, const float* alpha,
                              const float* a, int lda, const float* b, int ldb, const float* beta, float* c, int ldc) {
    return gemm<float>("cublasSgemm_v2", h, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

SIM_EXPORT int cublasDgemm_v2(cublasHandle_t h, int ta, int tb, int m, int n, int k, const double* alpha,
                              const double* a, int lda, const double* b, int ldb, const double* beta, double* c,
                              int ldc) {
    return gemm<double>("cublasDgemm_v2", h, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

SIM_EXPORT const char* cublasGetStatusName(int status) {
    switch (status) {
        case BLAS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case BLAS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case BLAS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case BLAS_BAD_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case BLAS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case BLAS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case BLAS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case BLAS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case BLAS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        case BLAS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
        default: return "CUBLAS_STATUS_UNKNOWN";
    }
}

SIM_EXPORT const char* cublasGetStatusString(int status) { return cublasGetStatusName(status); }

SIM_EXPORT int cublasCreate(cublasHandle_t* out) { return cublasCreate_v2(out); }
SIM_EXPORT int cublasDestroy(cublasHandle_t h) { return cublasDestroy_v2(h); }
