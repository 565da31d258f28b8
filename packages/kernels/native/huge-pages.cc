// Buffers in transparent huge pages (huge-pages.h). Chunks of at least kChunkBytes are anonymous
// mappings trimmed to a 2 MiB boundary and advised MADV_HUGEPAGE before anything touches them, so
// the kernel backs them with 2 MiB pages as they fault in (THP "madvise" mode is enough); like
// V8's own large buffers, nothing is resident until it is written. Buffers are carved in order
// from the current chunk and never from a range handed out before, so every buffer starts as the
// mapping's zero pages (small weight matrices share huge pages instead of each rounding up to
// one). They are external ArrayBuffers whose finalizer counts the chunk's live buffers down; a
// chunk is unmapped when its last buffer is collected and it is no longer the one being carved.
// One mutex: a process's threads (the backend's, the tests') share the chunks, and finalizers
// run on whichever thread owned the buffer.
#include "huge-pages.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>

namespace kiln {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kChunkBytes = size_t{64} << 20;
// Smaller buffers gain little and would pin a chunk's huge pages for a few KiB.
constexpr size_t kMinHugeBytes = size_t{64} << 10;
constexpr size_t kAlign = 64;

std::atomic<bool> enabled{true};

struct Chunk {
  char* base;
  size_t size;
  size_t used = 0;
  size_t live = 0;  // buffers not yet collected
};

std::mutex mutex;
Chunk* current = nullptr;

size_t roundUp(size_t x, size_t to) { return (x + to - 1) / to * to; }

void freeChunk(Chunk* chunk) {
  munmap(chunk->base, chunk->size);
  delete chunk;
}

// A new current chunk for at least `bytes`, or null when the mapping fails.
Chunk* startChunk(size_t bytes) {
  const size_t size = std::max(kChunkBytes, roundUp(bytes, kHugePage));
  // One huge page more than needed, then the unaligned head and the tail are given back.
  void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = roundUp(start, kHugePage);
  char* base = reinterpret_cast<char*>(aligned);
  if (aligned > start) munmap(raw, aligned - start);
  if (start + kHugePage > aligned) munmap(base + size, start + kHugePage - aligned);
  madvise(base, size, MADV_HUGEPAGE);  // advisory: without THP the pages stay 4 KiB
  if (current != nullptr && current->live == 0) freeChunk(current);
  current = new Chunk{base, size};
  return current;
}

void releaseBuffer(Napi::Env, void*, Chunk* chunk) {
  std::lock_guard<std::mutex> lock(mutex);
  if (--chunk->live == 0 && chunk != current) freeChunk(chunk);
}

}  // namespace

Napi::ArrayBuffer newHugePageBuffer(Napi::Env env, size_t bytes) {
  if (!enabled.load() || bytes < kMinHugeBytes) return Napi::ArrayBuffer::New(env, bytes);
  char* data;
  Chunk* chunk;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const size_t need = roundUp(bytes, kAlign);
    chunk = current;
    if (chunk == nullptr || chunk->size - chunk->used < need) chunk = startChunk(need);
    if (chunk == nullptr) return Napi::ArrayBuffer::New(env, bytes);
    data = chunk->base + chunk->used;
    chunk->used += need;
    chunk->live++;
  }
  return Napi::ArrayBuffer::New(env, data, bytes, releaseBuffer, chunk);
}

namespace {

// hugePages(on?) → whether new packed weights and KV pools go to huge pages; with a boolean,
// first sets it (the worker's KILN_HUGE_PAGES, and benchmarks comparing both).
Napi::Value HugePages(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsBoolean()) enabled.store(info[0].As<Napi::Boolean>());
  return Napi::Boolean::New(info.Env(), enabled.load());
}

// hugePageBuffer(bytes) → a zero-filled ArrayBuffer (newHugePageBuffer).
Napi::Value HugePageBuffer(const Napi::CallbackInfo& info) {
  const double bytes = info[0].ToNumber().DoubleValue();
  if (!(bytes >= 0) || bytes != static_cast<double>(static_cast<size_t>(bytes))) {
    throw Napi::RangeError::New(info.Env(), "hugePageBuffer: bytes must be a whole number ≥ 0");
  }
  return newHugePageBuffer(info.Env(), static_cast<size_t>(bytes));
}

}  // namespace

void registerHugePages(Napi::Env env, Napi::Object exports) {
  exports.Set("hugePages", Napi::Function::New(env, HugePages, "hugePages"));
  exports.Set("hugePageBuffer", Napi::Function::New(env, HugePageBuffer, "hugePageBuffer"));
}

}  // namespace kiln
