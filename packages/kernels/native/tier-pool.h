// A small persistent thread pool for the addon's own GEMM (tier-gemm.cc): no OpenMP, so the
// prebuilt binary depends on nothing but libc and libstdc++. One pool per process, driven by one
// calling thread at a time (the CPU backend's worker_thread); a mutex serializes other callers.
// Idle helpers spin ~20 µs (bridging the gemms of one forward step), then sleep on a condvar.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln {

// KILN_NATIVE_THREADS, else OMP_NUM_THREADS, else the hardware's threads.
inline int defaultThreads() {
  for (const char* name : {"KILN_NATIVE_THREADS", "OMP_NUM_THREADS"}) {
    const char* v = std::getenv(name);
    if (v != nullptr && std::atoi(v) > 0) return std::atoi(v);
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

class TierPool {
 public:
  // Runs fn(first, last) over [0, count) split into `threads` contiguous shares, the caller
  // running share 0; returns when every share is done.
  void run(int threads, int64_t count, const std::function<void(int64_t, int64_t)>& fn) {
    std::lock_guard<std::mutex> callerLock(callerMutex_);
    ensureHelpers(threads - 1);
    job_ = &fn;
    count_ = count;
    pending_.store(threads - 1, std::memory_order_relaxed);
    {
      // One word holds the generation and its share count, so a helper reads both at once.
      std::lock_guard<std::mutex> lock(mutex_);
      uint64_t next = ((state_.load(std::memory_order_relaxed) >> 16) + 1) << 16;
      state_.store(next | static_cast<uint64_t>(threads), std::memory_order_release);
    }
    wake_.notify_all();
    runShare(0, threads);
    while (pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }

  ~TierPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      state_.fetch_add(1 << 16, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : helpers_) t.join();
  }

 private:
  void runShare(int share, int shares) {
    int64_t first = count_ * share / shares;
    int64_t last = count_ * (share + 1) / shares;
    if (first < last) (*job_)(first, last);
  }

  void ensureHelpers(int wanted) {
    while (static_cast<int>(helpers_.size()) < wanted) {
      int index = static_cast<int>(helpers_.size()) + 1;
      // The helper starts from the state before this run's, so it cannot miss the run.
      uint64_t start = state_.load(std::memory_order_acquire);
      helpers_.emplace_back([this, index, start] { helperLoop(index, start); });
    }
  }

  void helperLoop(int index, uint64_t seen) {
    for (;;) {
      auto spinUntil = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
      while (state_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < spinUntil) {
      }
      if (state_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return state_.load(std::memory_order_acquire) != seen; });
        if (stopping_) return;
      }
      seen = state_.load(std::memory_order_acquire);
      int shares = static_cast<int>(seen & 0xffff);
      if (index < shares) {
        runShare(index, shares);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  std::mutex callerMutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::thread> helpers_;
  std::atomic<uint64_t> state_{0};  // generation << 16 | shares
  std::atomic<int> pending_{0};
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t count_ = 0;
  bool stopping_ = false;
};

inline void parallelFor(int threads, int64_t count,
                        const std::function<void(int64_t, int64_t)>& fn) {
  if (threads <= 1) {
    fn(0, count);
    return;
  }
  // Leaked on purpose: helpers must not be joined from a static destructor at process exit.
  static TierPool* pool = new TierPool();
  pool->run(threads, count, fn);
}

}  // namespace kiln
