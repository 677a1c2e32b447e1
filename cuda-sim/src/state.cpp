// Process-wide state of the simulator: configuration from the environment, counters, findings,
// fault injection, error names, and the host kernel libraries.
#include <cxxabi.h>
#include <dirent.h>
#include <elf.h>
#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdlib>
#include <cstring>

#include "sim.h"

namespace sim {

Config cfg;
Counters counters;

std::string strprintf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int n = std::vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < static_cast<int>(sizeof small)) return std::string(small, n > 0 ? n : 0);
    std::string big(static_cast<size_t>(n) + 1, '\0');
    va_start(ap, fmt);
    std::vsnprintf(big.data(), big.size(), fmt, ap);
    va_end(ap);
    big.resize(n);
    return big;
}

uint64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// ---- configuration ----
namespace {

const char* env(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
}

long long env_int(const char* name, long long dflt) {
    const char* v = env(name);
    return v ? std::strtoll(v, nullptr, 10) : dflt;
}

uint64_t parse_size(const char* v, uint64_t dflt) {
    if (!v) return dflt;
    char* end = nullptr;
    double x = std::strtod(v, &end);
    switch (end && *end ? std::toupper(static_cast<unsigned char>(*end)) : 0) {
        case 'K': x *= 1024.0; break;
        case 'M': x *= 1024.0 * 1024; break;
        case 'G': x *= 1024.0 * 1024 * 1024; break;
        case 'T': x *= 1024.0 * 1024 * 1024 * 1024; break;
        default: break;
    }
    return static_cast<uint64_t>(x);
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t b = 0;
    while (b <= s.size()) {
        size_t e = s.find(sep, b);
        if (e == std::string::npos) e = s.size();
        if (e > b) out.push_back(s.substr(b, e - b));
        b = e + 1;
    }
    return out;
}

struct Inject {
    std::string fn;
    uint64_t from, to;
    int code;
};
std::vector<Inject> injects;
std::atomic<bool> any_inject{false};
std::mutex inject_mu;
std::unordered_map<std::string, uint64_t> call_counts;

// "n", "n-m" or "n-" (from n on).
bool parse_range(const std::string& r, uint64_t* from, uint64_t* to) {
    size_t dash = r.find('-');
    *from = std::strtoull(r.c_str(), nullptr, 10);
    if (dash == std::string::npos) {
        *to = *from;
    } else if (dash + 1 == r.size()) {
        *to = UINT64_MAX;
    } else {
        *to = std::strtoull(r.c_str() + dash + 1, nullptr, 10);
    }
    return *from >= 1 && *to >= *from;
}

void add_inject(const std::string& fn, const std::string& range, int code, const char* var) {
    Inject in{fn, 0, 0, code};
    if (!parse_range(range, &in.from, &in.to) || fn.empty()) {
        std::fprintf(stderr, "cuda-sim: ignoring %s entry '%s:%s' (want NAME:N[-M]:CODE)\n", var, fn.c_str(),
                     range.c_str());
        return;
    }
    injects.push_back(in);
    any_inject = true;
}

void load_config() {
    cfg.devices = static_cast<int>(env_int("CUDA_SIM_DEVICES", 1));
    cfg.memory = parse_size(env("CUDA_SIM_MEMORY"), cfg.memory);
    cfg.schedules = std::max(1, static_cast<int>(env_int("CUDA_SIM_SCHEDULES", 1)));
    cfg.racecheck = env_int("CUDA_SIM_RACECHECK", 0) != 0;
    if (const char* a = env("CUDA_SIM_ASYNC")) cfg.lazy = std::strcmp(a, "eager") != 0;
    cfg.sticky = env_int("CUDA_SIM_STICKY", 1) != 0;
    cfg.strict = env_int("CUDA_SIM_STRICT", 1) != 0;
    cfg.quiet = env_int("CUDA_SIM_QUIET", 0) != 0;
    if (const char* p = env("CUDA_SIM_PTX_MAX")) std::sscanf(p, "%d.%d", &cfg.ptx_max_major, &cfg.ptx_max_minor);
    cfg.sm = static_cast<int>(env_int("CUDA_SIM_SM", 90));
    cfg.max_param_bytes = static_cast<uint32_t>(env_int("CUDA_SIM_MAX_PARAM_BYTES", 4096));
    cfg.seed = static_cast<uint64_t>(env_int("CUDA_SIM_SEED", 0x5eed));
    if (const char* k = env("CUDA_SIM_KERNELS")) cfg.kernel_libs = split(k, ':');
    load_faults();
}

// After cfg's own initialisation (same translation unit, so in order): the environment wins.
const bool config_loaded = (load_config(), true);

}  // namespace

void load_faults() {
    std::lock_guard<std::mutex> lock(inject_mu);
    injects.clear();
    if (const char* v = env("CUDA_SIM_FAIL_CALL")) {
        for (auto& item : split(v, ',')) {
            auto parts = split(item, ':');
            if (parts.size() != 3) {
                std::fprintf(stderr, "cuda-sim: ignoring CUDA_SIM_FAIL_CALL entry '%s' (want NAME:N[-M]:CODE)\n",
                             item.c_str());
                continue;
            }
            add_inject(parts[0], parts[1], std::atoi(parts[2].c_str()), "CUDA_SIM_FAIL_CALL");
        }
    }
    if (const char* v = env("CUDA_SIM_FAIL_ALLOC")) add_inject("cuMemAlloc_v2", v, OUT_OF_MEMORY, "CUDA_SIM_FAIL_ALLOC");
    if (const char* v = env("CUDA_SIM_FAIL_LAUNCH"))
        add_inject("cuLaunchKernel", v, static_cast<int>(env_int("CUDA_SIM_FAIL_LAUNCH_CODE", LAUNCH_OUT_OF_RESOURCES)),
                   "CUDA_SIM_FAIL_LAUNCH");
}

int enter(const char* fn) {
    if (!any_inject.load(std::memory_order_relaxed)) return 0;
    std::lock_guard<std::mutex> lock(inject_mu);
    uint64_t n = ++call_counts[fn];
    for (auto& in : injects) {
        if (in.fn == fn && n >= in.from && n <= in.to) {
            counters.injected++;
            if (!cfg.quiet) std::fprintf(stderr, "cuda-sim: injected error %d into call #%llu of %s\n", in.code,
                                         (unsigned long long)n, fn);
            return in.code;
        }
    }
    return 0;
}

// ---- findings ----
namespace {
std::mutex finding_mu;
std::deque<std::string> findings;  // stable storage: c_str() stays valid while kept
}  // namespace

const char* report(const std::string& text) {
    std::lock_guard<std::mutex> lock(finding_mu);
    if (!cfg.quiet) std::fprintf(stderr, "cuda-sim: %s\n", text.c_str());
    findings.push_back(text);
    if (findings.size() > 256) findings.pop_front();
    return findings.back().c_str();
}

namespace {
std::deque<std::pair<int, std::string>> details;
}

void set_detail(int code, const std::string& msg) {
    std::lock_guard<std::mutex> lock(finding_mu);
    const char* d = code_description(code);
    details.emplace_back(code, strprintf("%s (cuda-sim: %s)", d ? d : "error", msg.c_str()));
    if (details.size() > 256) details.pop_front();
}

const char* detail(int code) {
    std::lock_guard<std::mutex> lock(finding_mu);
    for (auto it = details.rbegin(); it != details.rend(); ++it)
        if (it->first == code) return it->second.c_str();
    return nullptr;
}

std::string last_finding() {
    std::lock_guard<std::mutex> lock(finding_mu);
    return findings.empty() ? std::string() : findings.back();
}

// ---- error names (CUDA 13.0's CUresult values) ----
namespace {
struct CodeInfo {
    int code;
    const char* name;
    const char* text;
};
const CodeInfo codes[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {4, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {34, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {46, "CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {209, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
    {218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "the provided PTX was compiled with an unsupported toolchain."},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {401, "CUDA_ERROR_ILLEGAL_STATE", "the operation cannot be performed in the present state"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {600, "CUDA_ERROR_NOT_READY", "device not ready"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {702, "CUDA_ERROR_LAUNCH_TIMEOUT", "the launch timed out and was terminated"},
    {709, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
    {710, "CUDA_ERROR_ASSERT", "device-side assert triggered"},
    {715, "CUDA_ERROR_ILLEGAL_INSTRUCTION", "an illegal instruction was encountered"},
    {716, "CUDA_ERROR_MISALIGNED_ADDRESS", "misaligned address"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {800, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {801, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {909, "CUDA_ERROR_TIMEOUT", "wait operation timed out"},
    {910, "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE", "the graph update was not performed because it included changes which violated constraints specific to instantiated graph update"},
    {911, "CUDA_ERROR_EXTERNAL_DEVICE", "an async error has occurred in external entity outside of CUDA"},
    {912, "CUDA_ERROR_INVALID_CLUSTER_SIZE", "a kernel launch error has occurred due to cluster misconfiguration"},
    {913, "CUDA_ERROR_FUNCTION_NOT_LOADED", "the function handle is not loaded when calling an API that requires a loaded function"},
    {914, "CUDA_ERROR_INVALID_RESOURCE_TYPE", "one or more resources passed in are not valid resource types for the operation"},
    {915, "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION", "one or more resources are insufficient or non-applicable for the operation"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};
}  // namespace

const char* code_name(int code) {
    for (auto& c : codes)
        if (c.code == code) return c.name;
    return nullptr;
}

const char* code_description(int code) {
    for (auto& c : codes)
        if (c.code == code) return c.text;
    return nullptr;
}

// ---- host kernel libraries ----
namespace {
std::mutex kernels_mu;
std::map<std::string, HostKernel> host_kernels;
std::string loading;  // the library whose constructors are registering now
std::vector<std::string> loaded;
bool libraries_loaded = false;

struct TlsSymbol {
    uint64_t offset, size;
    std::string name;
};
std::map<std::string, std::vector<TlsSymbol>> tls_symbols;  // by library path

// The thread-local symbols (the __shared__ arrays) of an ELF file's symbol table.
std::vector<TlsSymbol> read_tls_symbols(const std::string& path) {
    std::vector<TlsSymbol> out;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return out;
    std::vector<char> img;
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) img.insert(img.end(), buf, buf + n);
    std::fclose(f);
    if (img.size() < sizeof(Elf64_Ehdr) || std::memcmp(img.data(), ELFMAG, SELFMAG) != 0) return out;
    auto* eh = reinterpret_cast<const Elf64_Ehdr*>(img.data());
    if (eh->e_shoff + uint64_t(eh->e_shnum) * sizeof(Elf64_Shdr) > img.size()) return out;
    auto* sh = reinterpret_cast<const Elf64_Shdr*>(img.data() + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; ++i) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
        const Elf64_Shdr& strs = sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > img.size() || strs.sh_offset + strs.sh_size > img.size()) continue;
        auto* syms = reinterpret_cast<const Elf64_Sym*>(img.data() + sh[i].sh_offset);
        size_t count = sh[i].sh_size / sizeof(Elf64_Sym);
        for (size_t k = 0; k < count; ++k) {
            if (ELF64_ST_TYPE(syms[k].st_info) != STT_TLS || syms[k].st_name >= strs.sh_size) continue;
            const char* raw = img.data() + strs.sh_offset + syms[k].st_name;
            int status = 0;
            char* dem = abi::__cxa_demangle(raw, nullptr, nullptr, &status);
            out.push_back({syms[k].st_value, syms[k].st_size, status == 0 && dem ? dem : raw});
            std::free(dem);
        }
    }
    return out;
}

struct TlsSearch {
    uintptr_t addr;
    size_t size;
};

int find_tls(dl_phdr_info* info, size_t, void* p) {
    auto* s = static_cast<TlsSearch*>(p);
    if (info->dlpi_addr != s->addr) return 0;
    for (int k = 0; k < info->dlpi_phnum; ++k)
        if (info->dlpi_phdr[k].p_type == PT_TLS) s->size = info->dlpi_phdr[k].p_memsz;
    return 1;
}

std::vector<std::string> default_libraries() {
    // <dir of this libcuda.so.1>/../kernels/*.so
    Dl_info info{};
    std::vector<std::string> out;
    if (!dladdr(reinterpret_cast<void*>(&default_libraries), &info) || !info.dli_fname) return out;
    std::string self = info.dli_fname;
    std::string dir = self.substr(0, self.rfind('/') + 1) + "../kernels/";
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* ent = readdir(d)) {
            std::string n = ent->d_name;
            if (n.size() > 3 && n.compare(n.size() - 3, 3, ".so") == 0) out.push_back(dir + n);
        }
        closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}
}  // namespace

void load_kernel_libraries() {
    std::lock_guard<std::mutex> lock(kernels_mu);
    if (libraries_loaded) return;
    libraries_loaded = true;
    std::vector<std::string> libs = cfg.kernel_libs.empty() ? default_libraries() : cfg.kernel_libs;
    for (auto& path : libs) {
        loading = path;
        void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        loading.clear();
        if (!h) {
            std::fprintf(stderr, "cuda-sim: cannot load kernel library %s: %s\n", path.c_str(), dlerror());
            continue;
        }
        loaded.push_back(path);
        tls_symbols[path] = read_tls_symbols(path);
        size_t modid = 0;
        link_map* lm = nullptr;
        TlsSearch ts{0, 0};
        if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm) {
            ts.addr = lm->l_addr;
            dl_iterate_phdr(find_tls, &ts);
        }
        if (dlinfo(h, RTLD_DI_TLS_MODID, &modid) != 0) modid = 0;
        for (auto& [name, k] : host_kernels) {
            if (k.library == path) {
                k.tls_module = static_cast<int>(modid);
                k.tls_size = ts.size;
            }
        }
    }
}

const HostKernel* find_host_kernel(const std::string& name) {
    std::lock_guard<std::mutex> lock(kernels_mu);
    auto it = host_kernels.find(name);
    return it == host_kernels.end() ? nullptr : &it->second;
}

std::string shared_variable(const HostKernel* k, size_t offset, unsigned access_size) {
    std::lock_guard<std::mutex> lock(kernels_mu);
    auto it = tls_symbols.find(k->library);
    if (it == tls_symbols.end()) return "";
    for (auto& s : it->second) {
        if (offset >= s.offset && offset < s.offset + s.size) {
            uint64_t at = offset - s.offset;
            // "block_sum<float>(float)::raw" -> index in units of the access
            return strprintf("%s[%llu] (byte %llu of the %llu-byte __shared__ array)", s.name.c_str(),
                             (unsigned long long)(at / std::max(1u, access_size)), (unsigned long long)at,
                             (unsigned long long)s.size);
        }
    }
    return "";
}

std::string kernel_library_list() {
    std::lock_guard<std::mutex> lock(kernels_mu);
    if (loaded.empty()) return "no kernel library (set CUDA_SIM_KERNELS, or build cuda-sim's kernels)";
    std::string s;
    for (auto& l : loaded) s += (s.empty() ? "" : ", ") + l;
    return s;
}

}  // namespace sim

// Called by the static constructors of a kernel library while load_kernel_libraries dlopens it
// (kernels_mu is held by that thread then).
SIM_EXPORT void cuda_sim_register_kernel(const char* name, void* fn, void (*thunk)(void*, void**), int nparams,
                                         const unsigned* sizes, const unsigned char* kinds) {
    sim::HostKernel k;
    k.name = name;
    k.fn = fn;
    k.thunk = thunk;
    k.sizes.assign(sizes, sizes + nparams);
    k.kinds.assign(kinds, kinds + nparams);
    k.library = sim::loading;
    sim::host_kernels[name] = std::move(k);
}

SIM_EXPORT int cuSimGetCounters(cuSimCounters* out, size_t size) {
    if (!out || size < 8) return sim::INVALID_VALUE;
    cuSimCounters c{};
    auto& k = sim::counters;
    c.size = sizeof c;
    c.launches = k.launches;
    c.cublas_calls = k.cublas;
    c.syncs = k.syncs;
    c.implicit_syncs = k.implicit_syncs;
    c.h2d_copies = k.h2d;
    c.h2d_bytes = k.h2d_bytes;
    c.d2h_copies = k.d2h;
    c.d2h_bytes = k.d2h_bytes;
    c.d2d_copies = k.d2d;
    c.d2d_bytes = k.d2d_bytes;
    c.memsets = k.memsets;
    c.allocs = k.allocs;
    c.frees = k.frees;
    c.live_allocs = k.live_allocs;
    c.live_bytes = k.live_bytes;
    c.peak_bytes = k.peak_bytes;
    c.module_loads = k.module_loads;
    c.threads_run = k.threads;
    c.schedules_run = k.schedules;
    c.findings = k.findings;
    c.injected_faults = k.injected;
    std::memcpy(out, &c, size < sizeof c ? size : sizeof c);
    return 0;
}

SIM_EXPORT void cuSimResetCounters(void) {
    auto& k = sim::counters;
    for (auto* a : {&k.launches, &k.cublas, &k.syncs, &k.implicit_syncs, &k.h2d, &k.h2d_bytes, &k.d2h, &k.d2h_bytes,
                    &k.d2d, &k.d2d_bytes, &k.memsets, &k.allocs, &k.frees, &k.module_loads, &k.threads,
                    &k.schedules, &k.findings, &k.injected})
        a->store(0);
    k.peak_bytes.store(k.live_bytes.load());
}

SIM_EXPORT size_t cuSimLastFinding(char* buf, size_t len) {
    std::string f = sim::last_finding();
    if (buf && len) {
        size_t n = f.size() < len - 1 ? f.size() : len - 1;
        std::memcpy(buf, f.data(), n);
        buf[n] = '\0';
    }
    return f.size();
}
