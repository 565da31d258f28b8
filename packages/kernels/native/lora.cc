// Batched LoRA (ADR 0015, issue 11): the grouped low-rank matmul that runs beside a projection's
// gemm, SGMV/BGMV style. Mirrors LoraSlotTable.apply (src/cpu/lora-slots.ts), the TypeScript
// reference it is tested against:
//
// loraApply(x, inStride, y, outStride, outOffset, tokens, groupOffsets, as, bts, ranks, scales,
//   inF, outF, numThreads)
//   For every group g (tokens[groupOffsets[g] .. groupOffsets[g + 1]) share one adapter slot):
//     low[t, :] = scales[g] · x[t, 0..inF) · as[g]ᵀ          (shrink; as[g] is [rank, inF])
//     y[t, outOffset..outOffset + outF) += low[t, :] · bts[g]  (expand; bts[g] is Bᵀ, [rank, outF])
//   as and bts are JavaScript arrays of Uint16Array holding IEEE half floats (loraToHalf), ranks
//   an Int32Array, scales a Float32Array, one entry per group; a group of rank 0 is skipped (its adapter does not
//   target this projection). Throws RangeError for a token row or matrix outside its
//   array. Rows of y not named by tokens are untouched.
//
// Work items are tiles of up to kTileTokens tokens of one group, so one pass over the adapter's A
// and Bᵀ rows serves the whole tile (the SGMV reuse); decode batches with one token per adapter
// make one-token tiles (BGMV). Each token's output row belongs to exactly one item, so the
// calling thread's OpenMP team (the gemm's, as in attention.cc) shares items without locks
// (calls of at least kMinParallelMacs multiply-adds).
// Decode reads every adapter's A and B once per token: the kernel is bound by memory bandwidth,
// not arithmetic (16 rank-16 adapters of llama-110m are 42 % of the base model's bytes in f32).
// So the matrices are kept as half floats (11-bit significand, relative rounding 2^-11 per
// weight, far below the spread of a LoRA delta) and widened in registers (F16C / AVX-512);
// products and sums are float32 in 16 lanes.
//
// loraToHalf(src, dst): dst[i] = src[i] rounded to the nearest half float (ties to even).

#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "napi-args.h"
#include "onednn.h"
#include "simd.h"

namespace kiln {
namespace {

constexpr int kTileTokens = 8;
// Ranks above this are split into passes of this many (max_lora_rank defaults to 64).
constexpr int kMaxRankChunk = 64;
// Below this many multiply-adds in a call the calling thread works alone. Decode-sized calls
// (16 one-token groups of rank 16: 0.4–0.7 M) are bound by memory bandwidth, which one core
// nearly saturates, and a team wake-up per call (7 calls a layer) costs more than it brings:
// interleaved on the shared 2-core machine, 1 thread took 246–467 µs a call, 2 threads 671–1523.
// Prefill-sized calls (hundreds of tokens, tiles reusing A and Bᵀ) are compute-bound: threaded.
constexpr int64_t kMinParallelMacs = 1 << 22;

typedef _Float16 vh16 __attribute__((vector_size(32)));

KILN_INLINE vf16 loadHalf(const _Float16* p) {
  vh16 v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_convertvector(v, vf16);
}

struct Group {
  const _Float16* a;   // [rank, inF]
  const _Float16* bt;  // [rank, outF]
  int64_t rank;
  float scale;
};

struct Job {
  const float* x;
  float* y;
  int64_t inStride, outStride, outOffset, inF, outF;
  const int32_t* tokens;
  std::vector<Group> groups;
  std::vector<int32_t> itemGroup;  // [numItems] group of each tile
  std::vector<int32_t> itemStart;  // [numItems] first index into tokens
  std::vector<int32_t> itemLen;    // [numItems] tokens in the tile
  std::atomic<int64_t> next{0};
};

KILN_MULTIVERSION void runItem(const Job& job, int64_t item) {
  const Group& g = job.groups[job.itemGroup[item]];
  const int32_t* toks = job.tokens + job.itemStart[item];
  const int n = job.itemLen[item];
  const int64_t inF = job.inF;
  const int64_t outF = job.outF;
  const int64_t inFull = inF / kLanes * kLanes;
  const int64_t outFull = outF / kLanes * kLanes;
  float low[kTileTokens][kMaxRankChunk];
  for (int64_t k0 = 0; k0 < g.rank; k0 += kMaxRankChunk) {
    const int64_t numK = std::min<int64_t>(kMaxRankChunk, g.rank - k0);
    // Shrink: low[t, k] = scale · x[t] · a[k0 + k].
    for (int64_t k = 0; k < numK; k++) {
      const _Float16* a = g.a + (k0 + k) * inF;
      for (int t = 0; t < n; t++) {
        const float* xr = job.x + static_cast<int64_t>(toks[t]) * job.inStride;
        vf16 acc = vf16{};
        for (int64_t i = 0; i < inFull; i += kLanes) acc += load(xr + i) * loadHalf(a + i);
        float s = sumLanes(acc);
        for (int64_t i = inFull; i < inF; i++) s += xr[i] * static_cast<float>(a[i]);
        low[t][k] = s * g.scale;
      }
    }
    // Expand: y[t] += Σ_k low[t, k] · bt[k0 + k].
    for (int t = 0; t < n; t++) {
      float* yr = job.y + static_cast<int64_t>(toks[t]) * job.outStride + job.outOffset;
      for (int64_t o = 0; o < outFull; o += kLanes) {
        vf16 acc = load(yr + o);
        for (int64_t k = 0; k < numK; k++) acc += loadHalf(g.bt + (k0 + k) * outF + o) * low[t][k];
        store(yr + o, acc);
      }
      for (int64_t o = outFull; o < outF; o++) {
        float s = yr[o];
        for (int64_t k = 0; k < numK; k++) s += static_cast<float>(g.bt[(k0 + k) * outF + o]) * low[t][k];
        yr[o] = s;
      }
    }
  }
}

void runTeamMember(void* data) {
  Job& job = *static_cast<Job*>(data);
  const int64_t numItems = static_cast<int64_t>(job.itemGroup.size());
  for (;;) {
    const int64_t item = job.next.fetch_add(1, std::memory_order_relaxed);
    if (item >= numItems) break;
    runItem(job, item);
  }
}

void fail(const Napi::Env& env, const std::string& message) {
  throw Napi::RangeError::New(env, "loraApply: " + message);
}

Napi::Uint16Array matrixAt(const Napi::Env& env, const Napi::Array& arr, uint32_t g,
                           const char* name) {
  Napi::Value v = arr.Get(g);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array) {
    throw Napi::TypeError::New(env, std::string("loraApply: ") + name + " must hold Uint16Arrays");
  }
  return v.As<Napi::Uint16Array>();
}

const _Float16* halfData(Napi::Uint16Array arr) {
  return reinterpret_cast<const _Float16*>(arr.Data());
}

// Reads the per-group matrices and checks every token row against x and y; returns the
// multiply-adds of the call.
int64_t planGroups(const Napi::CallbackInfo& info, Job& job, int64_t xLen, int64_t yLen) {
  Napi::Env env = info.Env();
  Napi::Int32Array tokens = int32Arg(info, 5, "tokens");
  Napi::Int32Array offsets = int32Arg(info, 6, "groupOffsets");
  if (!info[7].IsArray() || !info[8].IsArray()) fail(env, "as and bts must be arrays");
  Napi::Array as = info[7].As<Napi::Array>();
  Napi::Array bts = info[8].As<Napi::Array>();
  Napi::Int32Array ranks = int32Arg(info, 9, "ranks");
  Napi::Float32Array scales = float32Arg(info, 10, "scales");
  const int64_t numGroups = static_cast<int64_t>(offsets.ElementLength()) - 1;
  if (numGroups < 0) fail(env, "groupOffsets is empty");
  if (as.Length() < numGroups || bts.Length() < numGroups) fail(env, "as or bts is too short");
  requireLen(env, ranks, numGroups, "ranks");
  requireLen(env, scales, numGroups, "scales");
  const int64_t numTokens = tokens.ElementLength();
  job.tokens = tokens.Data();
  const int32_t* rankData = ranks.Data();
  const int32_t* offsetData = offsets.Data();
  const float* scaleData = scales.Data();
  int64_t macs = 0;
  for (int64_t g = 0; g < numGroups; g++) {
    const int64_t rank = rankData[g];
    const int64_t start = offsetData[g];
    const int64_t end = offsetData[g + 1];
    if (rank < 0 || start < 0 || end < start || end > numTokens) fail(env, "bad group");
    if (rank == 0) {  // the group's adapter does not target this projection
      job.groups.push_back({nullptr, nullptr, 0, 0.0f});
      continue;
    }
    Napi::Uint16Array a = matrixAt(env, as, static_cast<uint32_t>(g), "as");
    Napi::Uint16Array bt = matrixAt(env, bts, static_cast<uint32_t>(g), "bts");
    requireLen(env, a, rank * job.inF, "an A matrix");
    requireLen(env, bt, rank * job.outF, "a Bᵀ matrix");
    job.groups.push_back({halfData(a), halfData(bt), rank, scaleData[g]});
    for (int64_t i = start; i < end; i++) {
      const int64_t t = job.tokens[i];
      if (t < 0 || t * job.inStride + job.inF > xLen ||
          t * job.outStride + job.outOffset + job.outF > yLen) {
        fail(env, "token row outside x or y");
      }
    }
    for (int64_t i = start; i < end; i += kTileTokens) {
      job.itemGroup.push_back(static_cast<int32_t>(g));
      job.itemStart.push_back(static_cast<int32_t>(i));
      job.itemLen.push_back(static_cast<int32_t>(std::min<int64_t>(kTileTokens, end - i)));
    }
    macs += (end - start) * rank * (job.inF + job.outF);
  }
  return macs;
}

Napi::Value LoraApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 14) throw Napi::TypeError::New(env, "loraApply takes 14 arguments");
  Napi::Float32Array x = float32Arg(info, 0, "x");
  Napi::Float32Array y = float32Arg(info, 2, "y");
  Job job;
  job.inStride = dimArg(info, 1, "inStride");
  job.outStride = dimArg(info, 3, "outStride");
  job.outOffset = dimArg(info, 4, "outOffset");
  job.inF = dimArg(info, 11, "inF");
  job.outF = dimArg(info, 12, "outF");
  const int numThreads = static_cast<int>(dimArg(info, 13, "numThreads"));
  if (job.inStride < job.inF || job.outStride < job.outOffset + job.outF) {
    fail(env, "a stride is shorter than its row");
  }
  job.x = x.Data();
  job.y = y.Data();
  const int64_t macs = planGroups(info, job, x.ElementLength(), y.ElementLength());
  const int64_t numItems = static_cast<int64_t>(job.itemGroup.size());
  if (numItems == 0) return env.Undefined();
  setNumThreads(numThreads);
  const int teamSize = macs >= kMinParallelMacs ? onednn().ompGetMaxThreads() : 1;
  if (teamSize > 1 && numItems > 1) {
    onednn().gompParallel(runTeamMember, &job, static_cast<unsigned>(teamSize), 0);
  } else {
    for (int64_t item = 0; item < numItems; item++) runItem(job, item);
  }
  return env.Undefined();
}

KILN_MULTIVERSION void toHalf(_Float16* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = static_cast<_Float16>(src[i]);
}

Napi::Value LoraToHalf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2) throw Napi::TypeError::New(env, "loraToHalf takes 2 arguments");
  Napi::Float32Array src = float32Arg(info, 0, "src");
  Napi::Value v = info[1];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array) {
    throw Napi::TypeError::New(env, "dst must be a Uint16Array");
  }
  Napi::Uint16Array dst = v.As<Napi::Uint16Array>();
  requireLen(env, dst, static_cast<int64_t>(src.ElementLength()), "dst");
  toHalf(reinterpret_cast<_Float16*>(dst.Data()), src.Data(), src.ElementLength());
  return env.Undefined();
}

}  // namespace

void registerLora(Napi::Env env, Napi::Object exports) {
  exports.Set("loraApply", Napi::Function::New(env, LoraApply, "loraApply"));
  exports.Set("loraToHalf", Napi::Function::New(env, LoraToHalf, "loraToHalf"));
}

}  // namespace kiln
