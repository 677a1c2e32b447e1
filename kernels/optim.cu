// The fused SGD update, exactly PyTorch's order (src/optim/sgd.rs has the CPU twin):
//   d = g + wd * p;  buf = first ? d : momentum * buf + (1 - dampening) * d;
//   d = nesterov ? d + momentum * buf : buf;  p -= lr * d.
// has_momentum = 0 skips the buffer (d is used directly).
#include "common.cuh"

template <typename T>
__device__ void sgd_update(T* p, const T* g, T* buf, i64 n, T lr, T momentum, T one_minus_dampening, T wd,
                           i64 use_wd, i64 has_momentum, i64 first, i64 nesterov) {
    GRID_STRIDE(i, n) {
        T d = use_wd ? g[i] + wd * p[i] : g[i];
        if (has_momentum) {
            T b = first ? d : momentum * buf[i] + one_minus_dampening * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        p[i] -= lr * d;
    }
}
EXPORT(sgd_update,
       (T * p, const T* g, T* buf, i64 n, T lr, T momentum, T one_minus_dampening, T wd, i64 use_wd, i64 has_momentum,
        i64 first, i64 nesterov),
       (p, g, buf, n, lr, momentum, one_minus_dampening, wd, use_wd, has_momentum, first, nesterov))
