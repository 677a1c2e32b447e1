// Kernels for cuda-sim's own tests (tests/selftest.cpp): correct ones, and ones with the bugs the
// simulator claims to catch. Compiled twice, like any kernel: to PTX by nvcc and for the host
// (with cuda_sim_device.h) into the simulator's kernel library.
#ifdef __CUDA_SIM__
#define EXPORT_KERNEL(fn) CUDA_SIM_KERNEL(fn)
#else
#define EXPORT_KERNEL(fn)
#endif

typedef long long i64;

// Tree sum of 256 values per block, correct: out[block] = sum of x over the block's slice.
extern "C" __global__ void block_sum_ok(const float* x, float* out, i64 n) {
    __shared__ float sh[256];
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    sh[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}
EXPORT_KERNEL(block_sum_ok)

// The same tree without the barrier inside the loop: a shared-memory race.
extern "C" __global__ void block_sum_racy(const float* x, float* out, i64 n) {
    __shared__ float sh[256];
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    sh[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    }
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}
EXPORT_KERNEL(block_sum_racy)

// out[idx[i]] += x[i] with repeated indices: a read-modify-write race that every serial order
// hides (the sums come out the same); only access tracking sees it.
extern "C" __global__ void scatter_add(const float* x, const i64* idx, float* out, i64 n) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[idx[i]] += x[i];
}
EXPORT_KERNEL(scatter_add)

// Every thread writes its index to out[0]: the result depends on the order.
extern "C" __global__ void last_writer_wins(i64* out) { out[0] = (i64)blockIdx.x * blockDim.x + threadIdx.x; }
EXPORT_KERNEL(last_writer_wins)

// A barrier only some threads reach.
extern "C" __global__ void divergent_barrier(float* out) {
    if (threadIdx.x < 16) __syncthreads();
    out[threadIdx.x] = 1.0f;
}
EXPORT_KERNEL(divergent_barrier)

// Even and odd threads wait at different barriers.
extern "C" __global__ void split_barriers(float* out) {
    if (threadIdx.x % 2 == 0) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}
EXPORT_KERNEL(split_barriers)

// Grid-stride copy: any grid covers any n, each thread starting at its global index.
extern "C" __global__ void copy(const float* x, float* y, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)blockDim.x * gridDim.x) y[i] = x[i];
}
EXPORT_KERNEL(copy)

// Reads x[0..n] inclusive: one element past the end.
extern "C" __global__ void read_one_past(const float* x, float* y, i64 n) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i < n ? i : 0] = x[i];
}
EXPORT_KERNEL(read_one_past)

// Writes y[-1].
extern "C" __global__ void write_before(float* y) {
    if (threadIdx.x == 0) y[-1] = 2.0f;
}
EXPORT_KERNEL(write_before)

// Initialises half of its shared array, then reads all of it.
extern "C" __global__ void shared_garbage(float* out) {
    __shared__ float sh[32];
    if (threadIdx.x < 16) sh[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = sh[threadIdx.x];
}
EXPORT_KERNEL(shared_garbage)

// Block 0 writes flag[0]; every other block reads it: blocks are never ordered within a launch.
extern "C" __global__ void cross_block(float* flag, float* out) {
    if (blockIdx.x == 0 && threadIdx.x == 0) flag[0] = 1.0f;
    if (blockIdx.x != 0 && threadIdx.x == 0) out[blockIdx.x] = flag[0];
}
EXPORT_KERNEL(cross_block)

// A 3-D launch: writes each thread's coordinates.
extern "C" __global__ void coords3(int* out) {
    unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    unsigned b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    unsigned g = b * blockDim.x * blockDim.y * blockDim.z + t;
    out[4 * g + 0] = threadIdx.x + 10 * threadIdx.y + 100 * threadIdx.z;
    out[4 * g + 1] = blockIdx.x + 10 * blockIdx.y + 100 * blockIdx.z;
    out[4 * g + 2] = blockDim.x * blockDim.y * blockDim.z;
    out[4 * g + 3] = gridDim.x * gridDim.y * gridDim.z;
}
EXPORT_KERNEL(coords3)

// A parameter struct passed by value.
struct Affine {
    double a, b;
    i64 n;
};
extern "C" __global__ void affine(const double* x, double* y, Affine p) {
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < p.n) y[i] = p.a * x[i] + p.b;
}
EXPORT_KERNEL(affine)
