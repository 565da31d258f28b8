// Paged causal attention for decodes and prefill chunks, over the KV pool layout of
// src/cpu/kv-cache.ts: per layer, keys and values are each [numBlocks, numKvHeads, blockSize,
// headDim] floats, and slot s of a sequence lives in block table[s / blockSize] at offset
// s % blockSize. Query token i of a sequence (position contextLen − queryLen + i) attends to
// positions 0..that position; query head h reads KV head h / (numHeads / numKvHeads).
// The pool is float32, or bfloat16 bits (KILN_KV_CACHE_DTYPE=bf16: half the bytes read per key
// and value, widened exactly to float32 in registers; all arithmetic stays float32).
//
// Work is split into items, one per (sequence, KV head), taken from a shared counter by the
// calling thread's OpenMP team (libgomp through onednn.h, the team oneDNN uses; in kiln_tier,
// built with KILN_TIER_POOL, the threads of tier-pool.h instead), so a thread
// that loses its core to another process simply takes fewer items. Each item walks its query
// rows four at a time (so a prefill chunk or a GQA group reads each key and value once per four
// rows); a row scores every visible key, takes an exact softmax (max-subtracted, float32) and
// mixes the values. The inner loops use the 16-lane vectors of simd.h, compiled per instruction
// set (AVX-512, AVX2+FMA, baseline x86-64) and picked at load time. Over a bf16 pool a thread
// asks for keys and values a chunk ahead, and for the next item's keys while it mixes values
// (runMember claims items one ahead; scoreKeys, mixValues).
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "napi-args.h"
#include "simd.h"
#ifdef KILN_TIER_POOL
#include "tier-pool.h"  // kiln_tier (ADR 0026): its own thread pool instead of oneDNN's OpenMP team
#else
#include "onednn.h"
#endif

namespace kiln {
namespace {

// Whether bf16 attention asks for keys and values ahead; attentionPrefetch(false) turns it off,
// for side-by-side benchmarks.
std::atomic<bool> prefetchKv{true};

// Below this many (query head row, key) pairs in a call, the calling thread works alone:
// waking the team costs more than it saves.
constexpr int64_t kMinParallelScores = 256;
// Query rows of one (sequence, KV head) item attended together, sharing each key and value load
// (prefill chunks and GQA groups).
constexpr int kTileRows = 4;

struct Job {
  // Arrays (validated by the caller).
  float* out;  // [numTokens, numHeads × headDim]
  const float* q;  // row t, head h at t × qStride + qOffset + h × headDim
  const void* keys;  // [numBlocks, numKvHeads, blockSize, headDim] floats or bf16 bits
  const void* values;  // same
  bool bf16;
  bool prefetch;  // bf16 pools: ask for keys and values ahead (scoreKeys, mixValues)
  const int32_t* queryLens;  // [numSeqs]
  const int32_t* contextLens;  // [numSeqs]
  const int32_t* tableOffsets;  // [numSeqs] start of each sequence's block table
  const int32_t* tables;
  std::vector<int64_t> tokenStarts;  // [numSeqs]
  std::vector<int32_t> itemSeqs;  // [numItems / numKvHeads] sequences this call attends
  int64_t qStride, qOffset;
  int numHeads, numKvHeads, headDim, blockSize;
  float scale;  // 1 / sqrt(headDim)
  // Per team thread: scores [kTileRows, paddedKeys] · q rows [kTileRows, headDim] · acc
  // [kTileRows, headDim] floats, and key offsets [paddedKeys].
  float* scratch;
  int64_t scratchStride;
  int64_t* offsets;
  int64_t paddedKeys;  // longest context rounded up to kLanes
  int64_t numItems;
  std::atomic<int64_t> next{0};
};

typedef uint16_t vu16x16 __attribute__((vector_size(32)));
typedef uint16_t vu16x32 __attribute__((vector_size(64)));

// Sixteen K or V elements as float32: as stored, or bfloat16 widened (exact: the top half of a
// float32's bits).
KILN_INLINE vf16 loadKv(const float* p) { return load(p); }
KILN_INLINE vf16 loadKv(const uint16_t* p) {
  vu16x16 raw;
  std::memcpy(&raw, p, sizeof raw);
  // Each bf16 becomes the high half of a 32-bit lane whose low half is zero: one interleave
  // with zeros (a widening convert and a shift compile to five instructions here).
  const vu16x16 zero = {};
  const vu16x32 wide = __builtin_shufflevector(zero, raw, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5,
                                               21, 6, 22, 7, 23, 8, 24, 9, 25, 10, 26, 11, 27,
                                               12, 28, 13, 29, 14, 30, 15, 31);
  return reinterpret_cast<vf16>(wide);
}
KILN_INLINE float kvScalar(float x) { return x; }
KILN_INLINE float kvScalar(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}

// Asks for the cache lines of one key or value row (prefetcht1: into L2 and closer, which
// measured a little faster than prefetcht0 here).
template <typename T>
KILN_INLINE void prefetchRow(const T* row, int headDim) {
  const char* p = reinterpret_cast<const char*>(row);
  const int64_t bytes = static_cast<int64_t>(headDim) * sizeof(T);
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 0, 2);
}

// The keys of the item a thread attends next (its key offsets, as keyOffsets writes them), which
// mixValues asks for while it mixes this item's values; offsets null when there is none.
struct NextItem {
  const int64_t* offsets = nullptr;
  int64_t numKeys = 0;
};

// Asks for keys [j0, j0 + kLanes) ∩ [0, numKeys) at `offsets` in pool `rows`.
template <typename T>
KILN_INLINE void prefetchChunk(const T* rows, const int64_t* offsets, int64_t j0,
                               int64_t numKeys, int headDim) {
  for (int l = 0; l < kLanes && j0 + l < numKeys; l++) {
    prefetchRow(rows + offsets[j0 + l], headDim);
  }
}

KILN_INLINE int64_t roundUp(int64_t n, int64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

// offsets[j] = element offset of key j of KV head g in the pool (the same for values), for
// j < contextLen; padded to a whole vector with offsets[0] so full-vector loops stay in bounds.
KILN_INLINE void keyOffsets(const Job& job, const int32_t* table, int g, int64_t contextLen,
                            int64_t* offsets) {
  const int64_t headLen = static_cast<int64_t>(job.blockSize) * job.headDim;
  for (int64_t j0 = 0, b = 0; j0 < contextLen; j0 += job.blockSize, b++) {
    const int64_t base = (static_cast<int64_t>(table[b]) * job.numKvHeads + g) * headLen;
    const int64_t n = std::min<int64_t>(job.blockSize, contextLen - j0);
    for (int64_t p = 0; p < n; p++) offsets[j0 + p] = base + p * job.headDim;
  }
  for (int64_t j = contextLen; j < roundUp(contextLen, kLanes); j++) offsets[j] = offsets[0];
}

// scores[r × stride + j] = qs[r] · K[j] for the tile's rows r and keys j < numKeys, sixteen
// keys at a time: sixteen independent FMA chains, then one transposing reduction instead of
// sixteen horizontal sums. Chunk-outer, so a chunk's keys come from memory once per tile and
// from L1 for the tile's other rows.
template <typename T, int numRows>
KILN_INLINE void scoreKeys(const Job& job, const int64_t* offsets, const float* qs,
                           int64_t numKeys, float* scores, int64_t stride) {
  const int headDim = job.headDim;
  const int numFull = headDim / kLanes * kLanes;
  const T* keys = static_cast<const T*>(job.keys);
  for (int64_t j0 = 0; j0 < numKeys; j0 += kLanes) {
    const T* k[kLanes];
    for (int l = 0; l < kLanes; l++) k[l] = keys + offsets[j0 + l];
    // A sequence's blocks lie anywhere in the pool, and a bf16 block of one head (2 KiB at
    // blockSize 16, headDim 64) is too short for the hardware prefetcher to run ahead of: ask
    // for the next chunk's keys now, and for the first values at the last chunk. f32 blocks
    // measured no faster with it, so they are left to the hardware.
    if (std::is_same_v<T, uint16_t> && job.prefetch) {
      prefetchChunk(keys, offsets, j0 + kLanes, numKeys, headDim);
      if (j0 + kLanes >= numKeys) {
        prefetchChunk(static_cast<const T*>(job.values), offsets, 0, numKeys, headDim);
      }
    }
    for (int r = 0; r < numRows; r++) {
      const float* q = qs + r * headDim;
      vf16 acc[kLanes] = {};
      for (int d = 0; d < numFull; d += kLanes) {
        const vf16 qv = load(q + d);
        for (int l = 0; l < kLanes; l++) acc[l] += qv * loadKv(k[l] + d);
      }
      vf16 sum = sumLanes16(acc);
      for (int d = numFull; d < headDim; d++) {
        for (int l = 0; l < kLanes; l++) sum[l] += q[d] * kvScalar(k[l][d]);
      }
      store(scores + r * stride + j0, sum);
    }
  }
}

// Turns scores[0..numKeys) into softmax numerators exp(s − max), zeroes [numKeys, zeroEnd)
// (zeroEnd a multiple of kLanes), and returns the numerators' sum.
KILN_INLINE float expScores(int64_t numKeys, int64_t zeroEnd, float* scores) {
  const int64_t padded = roundUp(numKeys, kLanes);
  float max = -INFINITY;
  for (int64_t j = 0; j < numKeys; j++) max = std::max(max, scores[j]);
  for (int64_t j = 0; j < padded; j += kLanes) {
    store(scores + j, expNonPositive(load(scores + j) - max));
  }
  for (int64_t j = numKeys; j < zeroEnd; j++) scores[j] = 0;
  vf16 sum = vf16{};
  for (int64_t j = 0; j < padded; j += kLanes) sum += load(scores + j);
  return sumLanes(sum);
}

// acc[r × headDim + d] = Σ_j weights[r × stride + j] × V[j][d] for the tile's rows, four keys
// per pass; each value vector is loaded once per tile. Weights are zero from each row's
// numKeys up to a whole vector past numKeys, so the last pass may run past it.
// Over a bf16 pool, each chunk of kLanes keys asks for the next chunk's values and for the same
// chunk of the next item's keys.
template <typename T, int numRows>
KILN_INLINE void mixValues(const Job& job, const int64_t* offsets, const float* weights,
                           int64_t stride, int64_t numKeys, float* acc, const NextItem& next) {
  const int headDim = job.headDim;
  const int numFull = headDim / kLanes * kLanes;
  const T* values = static_cast<const T*>(job.values);
  std::fill(acc, acc + numRows * headDim, 0.0f);
  for (int64_t j = 0; j < numKeys; j += 4) {
    if (std::is_same_v<T, uint16_t> && job.prefetch && j % kLanes == 0) {
      prefetchChunk(values, offsets, j + kLanes, numKeys, headDim);
      if (next.offsets != nullptr) {
        prefetchChunk(static_cast<const T*>(job.keys), next.offsets, j, next.numKeys, headDim);
      }
    }
    const T* v0 = values + offsets[j];
    const T* v1 = values + offsets[j + 1];
    const T* v2 = values + offsets[j + 2];
    const T* v3 = values + offsets[j + 3];
    float w[numRows][4];
    for (int r = 0; r < numRows; r++) {
      for (int u = 0; u < 4; u++) w[r][u] = weights[r * stride + j + u];
    }
    for (int d = 0; d < numFull; d += kLanes) {
      const vf16 x0 = loadKv(v0 + d), x1 = loadKv(v1 + d);
      const vf16 x2 = loadKv(v2 + d), x3 = loadKv(v3 + d);
      for (int r = 0; r < numRows; r++) {
        float* a = acc + r * headDim + d;
        store(a, load(a) + w[r][0] * x0 + w[r][1] * x1 + w[r][2] * x2 + w[r][3] * x3);
      }
    }
    for (int d = numFull; d < headDim; d++) {
      for (int r = 0; r < numRows; r++) {
        acc[r * headDim + d] += w[r][0] * kvScalar(v0[d]) + w[r][1] * kvScalar(v1[d]) +
                                w[r][2] * kvScalar(v2[d]) + w[r][3] * kvScalar(v3[d]);
      }
    }
  }
}

// Scores, softmax and values of one tile of numRows rows (row0 onwards) of an item.
template <typename T, int numRows>
KILN_INLINE void attendTile(const Job& job, const int64_t* offsets, int64_t prefixLen,
                            int groupSize, int64_t row0, float* scratch, const NextItem& next) {
  const int headDim = job.headDim;
  const int64_t stride = job.paddedKeys;
  const float* qs = scratch + kTileRows * stride;  // [kTileRows, headDim]
  float* acc = scratch + kTileRows * (stride + headDim);  // [kTileRows, headDim]
  // The tile's last row sees the most keys.
  const int64_t maxKeys = prefixLen + (row0 + numRows - 1) / groupSize + 1;
  scoreKeys<T, numRows>(job, offsets, qs, maxKeys, scratch, stride);
  float invSums[numRows];
  for (int r = 0; r < numRows; r++) {
    const int64_t numKeys = prefixLen + (row0 + r) / groupSize + 1;
    invSums[r] = 1.0f / expScores(numKeys, roundUp(maxKeys, kLanes), scratch + r * stride);
  }
  mixValues<T, numRows>(job, offsets, scratch, stride, maxKeys, acc, next);
  for (int r = 0; r < numRows; r++) {
    for (int d = 0; d < headDim; d++) acc[r * headDim + d] *= invSums[r];
  }
}

// Every query row of one (sequence, KV head) item, kTileRows rows at a time. Row ρ is query
// token ρ / groupSize, head g × groupSize + ρ mod groupSize; it sees prefixLen + token + 1 keys.
// offsets: the item's key offsets (keyOffsets); the last tile asks for `next`'s first keys.
template <typename T>
KILN_INLINE void attendItemOf(const Job& job, int64_t item, float* scratch,
                              const int64_t* offsets, const NextItem& next) {
  const int32_t s = job.itemSeqs[item / job.numKvHeads];
  const int g = static_cast<int>(item % job.numKvHeads);
  const int headDim = job.headDim;
  const int groupSize = job.numHeads / job.numKvHeads;
  const int64_t numRows = job.queryLens[s] * groupSize;
  const int64_t prefixLen = job.contextLens[s] - job.queryLens[s];
  float* qs = scratch + kTileRows * job.paddedKeys;  // [kTileRows, headDim]
  const float* acc = qs + kTileRows * headDim;  // [kTileRows, headDim]
  for (int64_t row0 = 0; row0 < numRows; row0 += kTileRows) {
    const int tileRows = static_cast<int>(std::min<int64_t>(kTileRows, numRows - row0));
    const NextItem ahead = row0 + tileRows >= numRows ? next : NextItem{};
    for (int r = 0; r < tileRows; r++) {
      const int64_t t = job.tokenStarts[s] + (row0 + r) / groupSize;
      const int64_t h = g * groupSize + (row0 + r) % groupSize;
      const float* qRow = job.q + t * job.qStride + job.qOffset + h * headDim;
      for (int d = 0; d < headDim; d++) qs[r * headDim + d] = qRow[d] * job.scale;
    }
    switch (tileRows) {
      case 1: attendTile<T, 1>(job, offsets, prefixLen, groupSize, row0, scratch, ahead); break;
      case 2: attendTile<T, 2>(job, offsets, prefixLen, groupSize, row0, scratch, ahead); break;
      case 3: attendTile<T, 3>(job, offsets, prefixLen, groupSize, row0, scratch, ahead); break;
      default:
        attendTile<T, kTileRows>(job, offsets, prefixLen, groupSize, row0, scratch, ahead);
        break;
    }
    for (int r = 0; r < tileRows; r++) {
      const int64_t t = job.tokenStarts[s] + (row0 + r) / groupSize;
      const int64_t h = g * groupSize + (row0 + r) % groupSize;
      float* outRow = job.out + (t * job.numHeads + h) * headDim;
      std::memcpy(outRow, acc + r * headDim, sizeof(float) * headDim);
    }
  }
}

KILN_MULTIVERSION void attendItem(const Job& job, int64_t item, float* scratch,
                                  const int64_t* offsets, const NextItem& next) {
  if (job.bf16) {
    attendItemOf<uint16_t>(job, item, scratch, offsets, next);
  } else {
    attendItemOf<float>(job, item, scratch, offsets, next);
  }
}

// Writes item's key offsets into offsets and returns its number of keys.
int64_t itemKeys(const Job& job, int64_t item, int64_t* offsets) {
  const int32_t s = job.itemSeqs[item / job.numKvHeads];
  const int g = static_cast<int>(item % job.numKvHeads);
  keyOffsets(job, job.tables + job.tableOffsets[s], g, job.contextLens[s], offsets);
  return job.contextLens[s];
}

// One thread's share: items from the shared counter, each claimed one item ahead so that the
// current one can ask for the next one's keys. The thread's two offset buffers alternate.
void runMember(Job& job, int thread) {
  float* scratch = job.scratch + thread * job.scratchStride;
  int64_t* buffers[2] = {job.offsets + 2 * thread * job.paddedKeys,
                         job.offsets + (2 * thread + 1) * job.paddedKeys};
  int64_t item = job.next.fetch_add(1, std::memory_order_relaxed);
  if (item < job.numItems) itemKeys(job, item, buffers[0]);
  for (int cur = 0; item < job.numItems; cur = 1 - cur) {
    const int64_t following = job.next.fetch_add(1, std::memory_order_relaxed);
    NextItem next;
    if (following < job.numItems) {
      next.numKeys = itemKeys(job, following, buffers[1 - cur]);
      next.offsets = buffers[1 - cur];
    }
    attendItem(job, item, scratch, buffers[cur], next);
    item = following;
  }
}

#ifndef KILN_TIER_POOL
void runTeamMember(void* data) {
  runMember(*static_cast<Job*>(data), onednn().ompGetThreadNum());
}
#endif

void fail(const Napi::Env& env, const std::string& message) {
  throw Napi::RangeError::New(env, "pagedAttention: " + message);
}

struct BatchPlan {
  int64_t numTokens = 0;  // all sequences, attended or not
  int64_t maxContextLen = 0;  // of the attended sequences
  int64_t numScores = 0;  // (row, key) pairs of the attended sequences
};

// Checks every attended sequence's block table against the pool (numBlocks blocks) and fills
// job.tokenStarts and job.itemSeqs. Sequences with queryLen 0 or ≥ skipQueryLen (when > 0)
// are not attended.
BatchPlan planSequences(const Napi::Env& env, Job& job, int64_t numSeqs, int64_t numTables,
                        int64_t numBlocks, int64_t skipQueryLen) {
  BatchPlan plan;
  for (int64_t s = 0; s < numSeqs; s++) {
    const int64_t queryLen = job.queryLens[s];
    const int64_t contextLen = job.contextLens[s];
    if (queryLen < 0 || contextLen < queryLen) fail(env, "bad queryLen/contextLen");
    job.tokenStarts[s] = plan.numTokens;
    plan.numTokens += queryLen;
    if (queryLen == 0 || (skipQueryLen > 0 && queryLen >= skipQueryLen)) continue;
    const int64_t first = job.tableOffsets[s];
    const int64_t numTableBlocks = (contextLen + job.blockSize - 1) / job.blockSize;
    if (first < 0 || first + numTableBlocks > numTables) fail(env, "block table out of range");
    for (int64_t b = 0; b < numTableBlocks; b++) {
      const int32_t id = job.tables[first + b];
      if (id < 0 || id >= numBlocks) fail(env, "block id outside the KV pool");
    }
    job.itemSeqs.push_back(static_cast<int32_t>(s));
    plan.maxContextLen = std::max(plan.maxContextLen, contextLen);
    plan.numScores += queryLen * contextLen * job.numHeads;
  }
  return plan;
}

// pagedAttention(out, q, qStride, qOffset, keys, values, queryLens, contextLens,
//   blockTableOffsets, blockTables, numHeads, numKvHeads, headDim, blockSize, skipQueryLen,
//   numThreads): writes out rows of every sequence whose queryLen is below skipQueryLen
//   (0: every sequence); other rows of out are left as they are.
Napi::Value PagedAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 16) throw Napi::TypeError::New(env, "pagedAttention takes 16 arguments");
  Napi::Float32Array out = float32Arg(info, 0, "out");
  Napi::Float32Array q = float32Arg(info, 1, "q");
  const KvPoolArg keys = kvPoolArg(info, 4, "keys");
  const KvPoolArg values = kvPoolArg(info, 5, "values");
  Napi::Int32Array queryLens = int32Arg(info, 6, "queryLens");
  Napi::Int32Array contextLens = int32Arg(info, 7, "contextLens");
  Napi::Int32Array tableOffsets = int32Arg(info, 8, "blockTableOffsets");
  Napi::Int32Array tables = int32Arg(info, 9, "blockTables");
  Job job;
  job.qStride = dimArg(info, 2, "qStride");
  job.qOffset = dimArg(info, 3, "qOffset");
  job.numHeads = static_cast<int>(dimArg(info, 10, "numHeads"));
  job.numKvHeads = static_cast<int>(dimArg(info, 11, "numKvHeads"));
  job.headDim = static_cast<int>(dimArg(info, 12, "headDim"));
  job.blockSize = static_cast<int>(dimArg(info, 13, "blockSize"));
  const int64_t skipQueryLen = dimArg(info, 14, "skipQueryLen");
  const int numThreads = static_cast<int>(dimArg(info, 15, "numThreads"));
  if (job.numKvHeads < 1 || job.headDim < 1 || job.blockSize < 1 ||
      job.numHeads % job.numKvHeads != 0) {
    fail(env, "bad head geometry");
  }
  const int64_t numSeqs = queryLens.ElementLength();
  requireLen(env, contextLens, numSeqs, "contextLens");
  requireLen(env, tableOffsets, numSeqs, "blockTableOffsets");
  const int64_t qDim = static_cast<int64_t>(job.numHeads) * job.headDim;
  const int64_t blockLen = static_cast<int64_t>(job.numKvHeads) * job.blockSize * job.headDim;
  if (keys.len != values.len || keys.bf16 != values.bf16) {
    fail(env, "keys and values differ in size or type");
  }
  if (job.qStride < job.qOffset + qDim) fail(env, "qStride is shorter than a q row");
  job.out = out.Data();
  job.q = q.Data();
  job.keys = keys.data;
  job.values = values.data;
  job.bf16 = keys.bf16;
  job.prefetch = prefetchKv.load();
  job.queryLens = queryLens.Data();
  job.contextLens = contextLens.Data();
  job.tableOffsets = tableOffsets.Data();
  job.tables = tables.Data();
  job.tokenStarts.resize(numSeqs);
  const BatchPlan plan = planSequences(env, job, numSeqs, tables.ElementLength(),
                                       keys.len / blockLen, skipQueryLen);
  requireLen(env, out, plan.numTokens * qDim, "out");
  if (plan.numTokens > 0) {
    requireLen(env, q, (plan.numTokens - 1) * job.qStride + job.qOffset + qDim, "q");
  }
  job.numItems = static_cast<int64_t>(job.itemSeqs.size()) * job.numKvHeads;
  if (job.numItems == 0) return env.Undefined();
  job.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(job.headDim)));
  const bool isParallel = plan.numScores >= kMinParallelScores;
#ifdef KILN_TIER_POOL
  const int teamSize = isParallel ? (numThreads > 0 ? numThreads : defaultThreads()) : 1;
#else
  setNumThreads(numThreads);
  const int teamSize = isParallel ? onednn().ompGetMaxThreads() : 1;
#endif
  job.paddedKeys = roundUp(plan.maxContextLen, kLanes);
  job.scratchStride = kTileRows * (job.paddedKeys + 2 * job.headDim);
  std::vector<float> scratch(job.scratchStride * teamSize);
  std::vector<int64_t> offsets(2 * job.paddedKeys * teamSize);  // two buffers per thread
  job.scratch = scratch.data();
  job.offsets = offsets.data();
  if (isParallel) {
#ifdef KILN_TIER_POOL
    // One share per member; members still take items from the shared counter.
    parallelFor(teamSize, teamSize, [&job](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; t++) runMember(job, static_cast<int>(t));
    });
#else
    onednn().gompParallel(runTeamMember, &job, static_cast<unsigned>(teamSize), 0);
#endif
  } else {
    runMember(job, 0);
  }
  return env.Undefined();
}

// attentionPrefetch(on?) → whether bf16 attention asks for keys and values ahead; with a
// boolean, first sets it (bench:forward --compare-prefetch compares both in one run).
Napi::Value AttentionPrefetch(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsBoolean()) prefetchKv.store(info[0].As<Napi::Boolean>());
  return Napi::Boolean::New(info.Env(), prefetchKv.load());
}

}  // namespace

void registerAttention(Napi::Env env, Napi::Object exports) {
  exports.Set("pagedAttention", Napi::Function::New(env, PagedAttention, "pagedAttention"));
  exports.Set("attentionPrefetch",
              Napi::Function::New(env, AttentionPrefetch, "attentionPrefetch"));
}

}  // namespace kiln
