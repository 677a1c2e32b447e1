// Streams: every stream has a worker thread that executes its operations (kernels, copies,
// memsets, GEMMs, event records) in order, asynchronously to the host.
//
// In the default lazy mode (CUDA_SIM_ASYNC=lazy) a worker only runs when the host waits for
// the stream (a synchronisation, a copy to pageable memory, an event wait), or when more than
// LAZY_LIMIT operations are queued. That is one of the schedules a real driver may choose, and
// the least forgiving: a host read that skipped its synchronisation sees the garbage the
// simulator left in the destination, every time. CUDA_SIM_ASYNC=eager runs operations as soon
// as they are queued.
//
// The NULL (legacy default) stream waits for all blocking streams of its context, and they wait
// for it; streams created with CU_STREAM_NON_BLOCKING do neither (the CUDA rules).
#include <algorithm>

#include "sim.h"

namespace sim {

namespace {
constexpr size_t LAZY_LIMIT = 4096;
}

uint64_t Stream::enqueue(Op op) {
    std::unique_lock<std::mutex> lock(mu);
    op.seq = next_seq++;
    uint64_t seq = op.seq;
    queue.push_back(std::move(op));
    if (!cfg.lazy || queue.size() > LAZY_LIMIT) flush_to = std::max(flush_to, seq);
    cv.notify_all();
    return seq;
}

void Stream::wait(uint64_t seq) {
    std::unique_lock<std::mutex> lock(mu);
    if (seq > flush_to) {
        flush_to = seq;
        cv.notify_all();
    }
    cv.wait(lock, [&] { return done_seq >= seq; });
}

void Stream::wait_all() {
    uint64_t last;
    {
        std::lock_guard<std::mutex> lock(mu);
        last = next_seq - 1;
    }
    wait(last);
}

bool Stream::uses(uintptr_t p, size_t len, std::string* who) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& op : queue) {
        for (uintptr_t u : op.uses) {
            if (u >= p && u < p + len) {
                *who = op.what;
                return true;
            }
        }
    }
    return false;
}

void Stream::loop() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
        cv.wait(lock, [&] { return (stop && queue.empty()) || (!queue.empty() && flush_to >= queue.front().seq); });
        if (queue.empty()) return;  // stopping
        Op& op = queue.front();     // stays valid: only this thread pops
        running = true;
        lock.unlock();
        for (auto& [s, seq] : op.deps) s->wait(seq);
        if (!(cfg.sticky && ctx->sticky.load())) op.run(*this);  // a faulted context runs nothing more
        if (op.record) {
            op.record->time_ms = now_ns() / 1e6;
            op.record->done = true;
        }
        lock.lock();
        done_seq = op.seq;
        queue.pop_front();
        running = false;
        cv.notify_all();
    }
}

void Context::fault(int code, const std::string& msg) {
    report(msg);
    set_detail(code, msg);
    std::lock_guard<std::mutex> lock(mu);
    if (cfg.sticky) {
        if (sticky.load() == 0) {
            sticky_msg = msg;
            sticky = code;
        }
    } else if (pending_error.load() == 0) {
        sticky_msg = msg;
        pending_error = code;
    }
}

int Context::take_error() {
    if (int s = sticky.load()) return s;
    return pending_error.exchange(0);
}

std::vector<Stream*> Context::all_streams() {
    std::lock_guard<std::mutex> lock(g_mu);
    std::vector<Stream*> out{null_stream.get()};
    out.insert(out.end(), streams.begin(), streams.end());
    return out;
}

}  // namespace sim
