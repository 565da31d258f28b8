// Batched LoRA (ADR 0015, issue 11): the grouped low-rank matmul that runs beside a projection's
// gemm, SGMV/BGMV style. Mirrors LoraSlotTable.apply (src/cpu/lora-slots.ts), the TypeScript
// reference it is tested against.
//
// new LoraBank(numSlots): the worker's resident adapters as the kernel reads them.
//   setSlot(slot, halves): slot holds one adapter's matrices, packed into one Uint16Array of IEEE
//     half floats (loraToHalf); the bank keeps a reference, so they live while the slot does.
//   clearSlot(slot): empties it.
//   apply(x, inStride, y, outStride, tokens, groupOffsets, plan, numThreads[, portableOnly]):
//     tokens[groupOffsets[g] .. groupOffsets[g + 1]) share one adapter. plan holds rows of
//     kPlanFields doubles, one per (projection, group) to run:
//       [group, slot, aOffset, btOffset, rank, inF, outF, outOffset, scale]
//     and for each row, every token t of its group:
//       low[t, :] = scale · x[t, 0..inF) · Aᵀ              (A: [rank, inF] at aOffset)
//       y[t, outOffset..outOffset + outF) += low[t, :] · Bᵀ (Bᵀ: [rank, outF] at btOffset)
//     Several rows may share x and y (q, k and v: one call per layer stage). Throws RangeError
//     for an empty slot, a matrix outside its slot's halves or a token row outside x or y,
//     before writing anything. Rows of y not named by the plan are untouched.
//
// Work items are tiles of up to kTileTokens tokens of one plan row, so one pass over the
// adapter's A and Bᵀ rows serves the whole tile (the SGMV reuse); decode batches with one token
// per adapter make one-token tiles (BGMV). Each (token, projection) output belongs to exactly one
// item, so the calling thread's OpenMP team (the gemm's, as in attention.cc) shares items
// without locks (calls of at least kMinParallelMacs multiply-adds).
// Decode reads every adapter's A and B once per token: the kernel is bound by memory bandwidth,
// not arithmetic (16 rank-16 adapters of llama-110m are 42 % of the base model's bytes in f32).
// So the matrices are kept as half floats (11-bit significand, relative rounding 2^-11 per
// weight, far below the spread of a LoRA delta) and widened in registers (F16C / AVX-512);
// products and sums are float32 in 16 lanes. The bank and the plan keep a call's JavaScript
// side to a few typed arrays: per-call argument marshalling was a measurable part of a decode
// step at 84 calls a step.
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

constexpr int kPlanFields = 9;

// One plan row: a projection of one group's tokens.
struct Unit {
  const _Float16* a;   // [rank, inF]
  const _Float16* bt;  // [rank, outF]
  int64_t rank, inF, outF, outOffset;
  float scale;
};

struct Job {
  const float* x;
  float* y;
  int64_t inStride, outStride;
  const int32_t* tokens;
  bool portableOnly = false;  // tests: run the integer-widening path even where AVX-512 exists
  std::vector<Unit> units;
  std::vector<int32_t> itemUnit;   // [numItems] unit of each tile
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
  const int64_t numItems = static_cast<int64_t>(job.itemUnit.size());
  for (;;) {
    const int64_t item = job.next.fetch_add(1, std::memory_order_relaxed);
    if (item >= numItems) break;
    runItem(job, item);
  }
}

void fail(const Napi::Env& env, const std::string& message) {
  throw Napi::RangeError::New(env, "LoraBank.apply: " + message);
}

// A plan field that must be an integer in [0, 2^31).
int64_t planInt(const Napi::Env& env, double v, const char* name) {
  if (!(v >= 0 && v < 2147483648.0) || v != static_cast<double>(static_cast<int64_t>(v))) {
    fail(env, std::string("plan ") + name + " must be an integer in [0, 2^31)");
  }
  return static_cast<int64_t>(v);
}

class LoraBank : public Napi::ObjectWrap<LoraBank> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "LoraBank",
                       {InstanceMethod<&LoraBank::SetSlot>("setSlot"),
                        InstanceMethod<&LoraBank::ClearSlot>("clearSlot"),
                        InstanceMethod<&LoraBank::Apply>("apply")});
  }

  explicit LoraBank(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LoraBank>(info) {
    const int64_t numSlots = dimArg(info, 0, "numSlots");
    slots_.resize(static_cast<size_t>(numSlots));
  }

 private:
  struct Slot {
    Napi::Reference<Napi::Uint16Array> ref;
    const _Float16* data = nullptr;
    int64_t len = 0;
  };

  size_t slotArg(const Napi::CallbackInfo& info) {
    const int64_t slot = dimArg(info, 0, "slot");
    if (slot >= static_cast<int64_t>(slots_.size())) {
      throw Napi::RangeError::New(info.Env(), "LoraBank: slot outside the bank");
    }
    return static_cast<size_t>(slot);
  }

  void SetSlot(const Napi::CallbackInfo& info) {
    const size_t slot = slotArg(info);
    Napi::Value v = info[1];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array) {
      throw Napi::TypeError::New(info.Env(), "LoraBank.setSlot: halves must be a Uint16Array");
    }
    Napi::Uint16Array halves = v.As<Napi::Uint16Array>();
    slots_[slot].ref = Napi::Persistent(halves);
    slots_[slot].data = reinterpret_cast<const _Float16*>(halves.Data());
    slots_[slot].len = static_cast<int64_t>(halves.ElementLength());
  }

  void ClearSlot(const Napi::CallbackInfo& info) {
    const size_t slot = slotArg(info);
    slots_[slot].ref.Reset();
    slots_[slot].data = nullptr;
    slots_[slot].len = 0;
  }

  // Reads the plan into units and tiles, checking every matrix against its slot and every token
  // row against x and y; returns the multiply-adds of the call.
  int64_t plan(const Napi::CallbackInfo& info, Job& job, int64_t xLen, int64_t yLen) {
    Napi::Env env = info.Env();
    Napi::Int32Array tokens = int32Arg(info, 4, "tokens");
    Napi::Int32Array offsets = int32Arg(info, 5, "groupOffsets");
    Napi::Value planValue = info[6];
    if (!planValue.IsTypedArray() ||
        planValue.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
      throw Napi::TypeError::New(env, "LoraBank.apply: plan must be a Float64Array");
    }
    Napi::Float64Array planArr = planValue.As<Napi::Float64Array>();
    if (planArr.ElementLength() % kPlanFields != 0) fail(env, "plan is not whole rows");
    const int64_t numRows = static_cast<int64_t>(planArr.ElementLength()) / kPlanFields;
    const int64_t numGroups = static_cast<int64_t>(offsets.ElementLength()) - 1;
    const int64_t numTokens = tokens.ElementLength();
    job.tokens = tokens.Data();
    const int32_t* offsetData = offsets.Data();
    const double* rows = planArr.Data();
    int64_t macs = 0;
    job.units.reserve(static_cast<size_t>(numRows));
    for (int64_t r = 0; r < numRows; r++) {
      const double* f = rows + r * kPlanFields;
      const int64_t g = planInt(env, f[0], "group");
      const int64_t slot = planInt(env, f[1], "slot");
      const int64_t aOff = planInt(env, f[2], "aOffset");
      const int64_t btOff = planInt(env, f[3], "btOffset");
      Unit u{nullptr, nullptr, planInt(env, f[4], "rank"), planInt(env, f[5], "inF"),
             planInt(env, f[6], "outF"), planInt(env, f[7], "outOffset"),
             static_cast<float>(f[8])};
      if (g >= numGroups) fail(env, "plan names a group outside groupOffsets");
      const int64_t start = offsetData[g];
      const int64_t end = offsetData[g + 1];
      if (start < 0 || end < start || end > numTokens) fail(env, "bad group");
      if (slot >= static_cast<int64_t>(slots_.size()) || slots_[slot].data == nullptr) {
        fail(env, "plan names an empty slot");
      }
      if (aOff + u.rank * u.inF > slots_[slot].len || btOff + u.rank * u.outF > slots_[slot].len) {
        fail(env, "a matrix outside its slot's halves");
      }
      if (u.inF > job.inStride || u.outOffset + u.outF > job.outStride) {
        fail(env, "a stride is shorter than its row");
      }
      for (int64_t i = start; i < end; i++) {
        const int64_t t = job.tokens[i];
        if (t < 0 || t * job.inStride + u.inF > xLen ||
            t * job.outStride + u.outOffset + u.outF > yLen) {
          fail(env, "token row outside x or y");
        }
      }
      if (u.rank == 0) continue;
      u.a = slots_[slot].data + aOff;
      u.bt = slots_[slot].data + btOff;
      const int32_t unit = static_cast<int32_t>(job.units.size());
      job.units.push_back(u);
      for (int64_t i = start; i < end; i += kTileTokens) {
        job.itemUnit.push_back(unit);
        job.itemStart.push_back(static_cast<int32_t>(i));
        job.itemLen.push_back(static_cast<int32_t>(std::min<int64_t>(kTileTokens, end - i)));
      }
      macs += (end - start) * u.rank * (u.inF + u.outF);
    }
    return macs;
  }

  void Apply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 8) throw Napi::TypeError::New(env, "LoraBank.apply takes 8 arguments");
    Napi::Float32Array x = float32Arg(info, 0, "x");
    Napi::Float32Array y = float32Arg(info, 2, "y");
    Job job;
    job.portableOnly = info.Length() > 8 && info[8].ToBoolean().Value();
    job.inStride = dimArg(info, 1, "inStride");
    job.outStride = dimArg(info, 3, "outStride");
    const int numThreads = static_cast<int>(dimArg(info, 7, "numThreads"));
    job.x = x.Data();
    job.y = y.Data();
    const int64_t macs = plan(info, job, x.ElementLength(), y.ElementLength());
    const int64_t numItems = static_cast<int64_t>(job.itemUnit.size());
    if (numItems == 0) return;
    setNumThreads(numThreads);
    const int teamSize = macs >= kMinParallelMacs ? onednn().ompGetMaxThreads() : 1;
    if (teamSize > 1 && numItems > 1) {
      onednn().gompParallel(runTeamMember, &job, static_cast<unsigned>(teamSize), 0);
    } else {
      for (int64_t item = 0; item < numItems; item++) runItem(job, item);
    }
  }

  std::vector<Slot> slots_;
};

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
  exports.Set("LoraBank", LoraBank::Define(env));
  exports.Set("loraToHalf", Napi::Function::New(env, LoraToHalf, "loraToHalf"));
}

}  // namespace kiln
