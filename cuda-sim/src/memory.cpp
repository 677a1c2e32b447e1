// Device memory: every cuMemAlloc is its own mapping, apart from the host heap, laid out as
//
//   [guard page] [data pages ... | slack | allocation] [guard page]
//
// with the allocation 256-byte aligned (cuMemAlloc's promise) and ending as close to the upper
// guard page as that alignment allows. Fresh memory is filled with 0xFF bytes (NaN in f32 and
// f64, -1 in integers), as uninitialised GPU memory holds garbage. The kernels' accesses are
// checked exactly (exec.cpp), the guard pages are the backstop for everything else. A freed
// allocation is unmapped (PROT_NONE) and kept in a quarantine, so a later access is reported
// as a use after free instead of reading memory that another allocation now owns.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <list>
#include <shared_mutex>

#include "sim.h"

namespace sim {

namespace {
constexpr size_t PAGE = 4096;
constexpr size_t ALIGN = 256;
constexpr size_t QUARANTINE_ENTRIES = 1 << 15;

std::shared_mutex mem_mu;
std::map<uintptr_t, std::shared_ptr<Allocation>> live;   // by base
std::map<uintptr_t, std::shared_ptr<Allocation>> freed;  // by map_base, the quarantine
std::list<uintptr_t> freed_order;                         // oldest first
uint64_t alloc_count = 0, free_count = 0;

std::mutex pinned_mu;
std::map<uintptr_t, size_t> pinned;  // cuMemAllocHost blocks: base -> size

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }
}  // namespace

int mem_alloc(Context* ctx, size_t bytes, uintptr_t* out) {
    if (bytes == 0) return INVALID_VALUE;  // as the driver: cuMemAlloc(0) is an error
    Device* dev = ctx->device;
    uint64_t before = dev->used.fetch_add(bytes);
    if (before + bytes > dev->total || before + bytes < before) {
        dev->used.fetch_sub(bytes);
        return OUT_OF_MEMORY;
    }
    size_t padded = round_up(bytes, ALIGN);
    size_t data = round_up(padded, PAGE);
    size_t len = data + 2 * PAGE;
    void* m = mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        dev->used.fetch_sub(bytes);
        return OUT_OF_MEMORY;
    }
    uintptr_t map_base = reinterpret_cast<uintptr_t>(m);
    if (mprotect(reinterpret_cast<void*>(map_base + PAGE), data, PROT_READ | PROT_WRITE) != 0) {
        munmap(m, len);
        dev->used.fetch_sub(bytes);
        return OUT_OF_MEMORY;
    }
    auto a = std::make_shared<Allocation>();
    a->map_base = map_base;
    a->map_len = len;
    a->base = map_base + PAGE + data - padded;
    a->size = bytes;
    a->ctx = ctx;
    // Garbage, as on a GPU: the whole data area, slack included.
    std::memset(reinterpret_cast<void*>(map_base + PAGE), 0xFF, data);
    {
        std::unique_lock<std::shared_mutex> lock(mem_mu);
        a->id = ++alloc_count;
        live[a->base] = a;
    }
    counters.allocs++;
    counters.live_allocs++;
    uint64_t now = counters.live_bytes.fetch_add(bytes) + bytes;
    uint64_t peak = counters.peak_bytes.load();
    while (now > peak && !counters.peak_bytes.compare_exchange_weak(peak, now)) {
    }
    *out = a->base;
    return OK;
}

int mem_free(uintptr_t p) {
    std::shared_ptr<Allocation> a;
    {
        std::unique_lock<std::shared_mutex> lock(mem_mu);
        auto it = live.find(p);
        if (it == live.end()) return INVALID_VALUE;  // not the base of a live allocation
        a = it->second;
        live.erase(it);
        a->freed_by = ++free_count;
        a->freed = true;
        freed[a->map_base] = a;
        freed_order.push_back(a->map_base);
        while (freed_order.size() > QUARANTINE_ENTRIES) {
            uintptr_t old = freed_order.front();
            freed_order.pop_front();
            auto f = freed.find(old);
            if (f != freed.end()) {
                munmap(reinterpret_cast<void*>(f->second->map_base), f->second->map_len);
                freed.erase(f);
            }
        }
    }
    // Keep the address range reserved but inaccessible, and give the pages back.
    mprotect(reinterpret_cast<void*>(a->map_base), a->map_len, PROT_NONE);
    madvise(reinterpret_cast<void*>(a->map_base), a->map_len, MADV_DONTNEED);
    // Race-tracking state goes too, unless a running launch still holds the allocation (it is
    // dropped with the last reference then): after the erase above nobody can take a new one.
    if (a.use_count() <= 2) a->shadow.reset();
    a->ctx->device->used.fetch_sub(a->size);
    counters.frees++;
    counters.live_allocs--;
    counters.live_bytes.fetch_sub(a->size);
    return OK;
}

std::shared_ptr<Allocation> find_live(uintptr_t p, size_t len) {
    std::shared_lock<std::shared_mutex> lock(mem_mu);
    auto it = live.upper_bound(p);
    if (it == live.begin()) return nullptr;
    --it;
    Allocation* a = it->second.get();
    if (p >= a->base && len <= a->size && p - a->base <= a->size - len) return it->second;
    return nullptr;
}

std::string describe_address(uintptr_t p, size_t len) {
    std::shared_lock<std::shared_mutex> lock(mem_mu);
    auto it = live.upper_bound(p);
    if (it != live.begin()) {
        auto prev = std::prev(it);
        Allocation* a = prev->second.get();
        if (p >= a->base && p < a->base + a->size) {
            if (p + len > a->base + a->size)
                return strprintf("bytes %zu..%zu of allocation #%llu (%zu bytes at 0x%llx): %zu bytes past its end",
                                 (size_t)(p - a->base), (size_t)(p - a->base + len), (unsigned long long)a->id, a->size,
                                 (unsigned long long)a->base, (size_t)(p + len - a->base - a->size));
            return strprintf("byte %zu of allocation #%llu (%zu bytes at 0x%llx)", (size_t)(p - a->base),
                             (unsigned long long)a->id, a->size, (unsigned long long)a->base);
        }
        if (p >= a->base + a->size && p < a->map_base + a->map_len)
            return strprintf("starting %zu bytes past the end of allocation #%llu (%zu bytes at 0x%llx)",
                             (size_t)(p - a->base - a->size), (unsigned long long)a->id, a->size,
                             (unsigned long long)a->base);
    }
    if (it != live.end()) {
        Allocation* a = it->second.get();
        if (p >= a->map_base && p < a->base)
            return strprintf("%zu bytes before the start of allocation #%llu (%zu bytes at 0x%llx)",
                             (size_t)(a->base - p), (unsigned long long)a->id, a->size, (unsigned long long)a->base);
    }
    auto f = freed.upper_bound(p);
    if (f != freed.begin()) {
        Allocation* a = std::prev(f)->second.get();
        if (p >= a->map_base && p < a->map_base + a->map_len)
            return strprintf("allocation #%llu (%zu bytes at 0x%llx), freed by cuMemFree #%llu: a use after free",
                             (unsigned long long)a->id, a->size, (unsigned long long)a->base,
                             (unsigned long long)a->freed_by);
    }
    if (p < 4096) return "a null pointer";
    return "not device memory (a host address, or never allocated)";
}

bool is_pinned(const void* ptr, size_t len) {
    uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
    std::lock_guard<std::mutex> lock(pinned_mu);
    auto it = pinned.upper_bound(p);
    if (it == pinned.begin()) return false;
    --it;
    return p >= it->first && p + len <= it->first + it->second;
}

int host_alloc(size_t bytes, void** out) {
    void* p = nullptr;
    if (posix_memalign(&p, PAGE, bytes ? bytes : 1) != 0) return OUT_OF_MEMORY;
    std::lock_guard<std::mutex> lock(pinned_mu);
    pinned[reinterpret_cast<uintptr_t>(p)] = bytes;
    *out = p;
    return OK;
}

size_t pinned_size(const void* p) {
    std::lock_guard<std::mutex> lock(pinned_mu);
    auto it = pinned.find(reinterpret_cast<uintptr_t>(p));
    return it == pinned.end() ? 0 : it->second;
}

int host_free(void* p) {
    {
        std::lock_guard<std::mutex> lock(pinned_mu);
        auto it = pinned.find(reinterpret_cast<uintptr_t>(p));
        if (it == pinned.end()) return INVALID_VALUE;
        pinned.erase(it);
    }
    free(p);
    return OK;
}

void device_memory_info(Context* ctx, size_t* free_bytes, size_t* total) {
    uint64_t used = ctx->device->used.load();
    *total = ctx->device->total;
    *free_bytes = used >= ctx->device->total ? 0 : ctx->device->total - used;
}

}  // namespace sim
