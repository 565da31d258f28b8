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

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kiln {
namespace {

constexpr int kTileTokens = 8;
// Ranks above this are split into passes of this many (max_lora_rank defaults to 64).
constexpr int kMaxRankChunk = 64;
// Below this many multiply-adds in a call the calling thread works alone (a team wake-up costs
// a few microseconds). Decode-sized calls (16 one-token groups of rank 16: 0.4–0.7 M) are above
// it: with halves widened by vcvtph2ps, one llama-110m call took 25 µs on one thread and 17 µs
// on two on a quiet machine (the memory traffic is 0.8–1.6 MB a call).
constexpr int64_t kMinParallelMacs = 1 << 17;

typedef uint16_t vu16h __attribute__((vector_size(32)));

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
  bool portableOnly = false;  // tests: run the integer-widening path even where AVX-512 exists
  std::vector<Group> groups;
  std::vector<int32_t> itemGroup;  // [numItems] group of each tile
  std::vector<int32_t> itemStart;  // [numItems] first index into tokens
  std::vector<int32_t> itemLen;    // [numItems] tokens in the tile
  std::atomic<int64_t> next{0};
};

namespace portable {

// 16 IEEE half floats widened to float32 with integer vector operations: GCC 12 turns
// __builtin_convertvector on _Float16 vectors into 16 scalar conversions, which made this loop
// compute-bound. Normal halves move their exponent and mantissa into place and rescale by 2^112;
// subnormals are m · 2^-24; infinities and NaNs keep an all-ones exponent. Exact for every half.
KILN_INLINE vf16 loadHalf(const _Float16* p) {
  vu16h raw;
  std::memcpy(&raw, p, sizeof raw);
  const vi16 h = __builtin_convertvector(raw, vi16);
  const vi16 sign = (h & 0x8000) << 16;
  const vi16 mag = h & 0x7fff;
  const vi16 normal = reinterpret_cast<vi16>(reinterpret_cast<vf16>(mag << 13) * 0x1p112f);
  const vi16 subnormal = reinterpret_cast<vi16>(__builtin_convertvector(mag, vf16) * 0x1p-24f);
  const vi16 special = (mag << 13) | 0x7f800000;
  const vi16 bits = mag >= 0x7c00 ? special : (mag < 0x0400 ? subnormal : normal);
  return reinterpret_cast<vf16>(bits | sign);
}

#define LORA_KERNEL_TARGET KILN_MULTIVERSION
#include "lora-kernel.inc"
#undef LORA_KERNEL_TARGET

}  // namespace portable

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
namespace avx512 {

// 16 halves widened by one vcvtph2ps (AVX-512F with F16C).
KILN_INLINE vf16 loadHalf(const _Float16* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return reinterpret_cast<vf16>(_mm512_cvtph_ps(raw));
}

#define LORA_KERNEL_TARGET
#include "lora-kernel.inc"
#undef LORA_KERNEL_TARGET

}  // namespace avx512
#pragma GCC pop_options

const bool kUseAvx512 = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}();
#else
constexpr bool kUseAvx512 = false;
#endif

void runItem(const Job& job, int64_t item) {
#if defined(__x86_64__)
  if (kUseAvx512 && !job.portableOnly) return avx512::runItem(job, item);
#endif
  portable::runItem(job, item);
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
  job.portableOnly = info.Length() > 14 && info[14].ToBoolean().Value();
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
