// Native sampling of one row of logits: greedy argmax, temperature with top-k / top-p / min-p,
// log-sum-exp and top logprobs. A line-by-line port of src/sampling (truncation.ts,
// top-k-top-p.ts, logprobs.ts, exp-non-positive.ts), which stays the reference: the same
// double arithmetic in the same order, so the chosen token is bit-identical (no -march here, so
// the compiler cannot contract into FMA; the uniform draw comes from the TypeScript Philox).
// The log-sum-exp for logprobs is vectorized (its sum is reordered, and log() may differ from
// V8's Math.log by an ulp): logprobs agree to ~1e-15, tokens exactly.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <cstring>

#include "napi-args.h"
#include "simd.h"

namespace kiln {
namespace {

constexpr int kBucketsPerNat = 4;
constexpr int kBucketRange = 64 * kBucketsPerNat;
constexpr int kNumBuckets = kBucketRange + 1;
constexpr int kMinExponent = -1074;

// [1076] 2^(i − 1074), exactly as exp-non-positive.ts builds it.
const std::vector<double>& pow2Table() {
  static const std::vector<double> table = [] {
    std::vector<double> t(1076);
    for (int i = 0; i < 1076; i++) t[i] = std::ldexp(1.0, i + kMinExponent);
    return t;
  }();
  return table;
}

// expNonPositive of exp-non-positive.ts, operation for operation.
inline double expNonPositive(double z, const double* pow2) {
  const double t = z * 1.4426950408889634;  // Math.LOG2E
  if (!(t > kMinExponent)) return 0;
  const int32_t n = static_cast<int32_t>(t - 0.5);  // JS `| 0`: truncation toward zero
  const double f = (t - n) * 0.6931471805599453;    // Math.LN2
  const double c3 = 1.0 / 6, c4 = 1.0 / 24, c5 = 1.0 / 120, c6 = 1.0 / 720, c7 = 1.0 / 5040;
  const double ef = 1 + f * (1 + f * (0.5 + f * (c3 + f * (c4 + f * (c5 + f * (c6 + f * c7))))));
  return ef * pow2[n - kMinExponent];
}

// The O(vocab) passes of greedy sampling and log-sum-exp, vectorized (simd.h clones per ISA).
// argmax is exact in any order; the sum of exp differs from the reference's sequential sum by
// rounding only (~1e-16 relative), which moves logprobs in their last bits, never a token.

typedef double vd8 __attribute__((vector_size(64)));
typedef int64_t vl8 __attribute__((vector_size(64)));
typedef float vf8 __attribute__((vector_size(32)));

// Largest value of row, ignoring NaN; −∞ when there is none.
KILN_MULTIVERSION float maxValue(const float* row, int64_t len) {
  vf16 m = splat(-INFINITY);
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    const vf16 v = load(row + i);
    m = v > m ? v : m;  // a NaN lane compares false and keeps m
  }
  float best = -INFINITY;
  for (int l = 0; l < kLanes; l++) best = m[l] > best ? m[l] : best;
  for (; i < len; i++) best = row[i] > best ? row[i] : best;
  return best;
}

// argmax of logprobs.ts/truncation.ts: the first index holding the maximum; 0 if none is finite
// or every entry is −∞/NaN.
int64_t argmax(const float* row, int64_t len) {
  const float max = maxValue(row, len);
  if (max == -INFINITY) return 0;
  for (int64_t i = 0; i < len; i++) {
    if (row[i] == max) return i;
  }
  return 0;
}

// Σ exp(row[i] − max) in double, for row[i] ≤ max (NaN and −∞ add 0): expNonPositive's
// polynomial, eight lanes at a time, with 2^n from exponent bits (terms below 2^−1022 dropped).
KILN_MULTIVERSION double sumExpBelow(const float* row, int64_t len, double max,
                                     const double* pow2) {
  vd8 acc = {};
  int64_t i = 0;
  const double c3 = 1.0 / 6, c4 = 1.0 / 24, c5 = 1.0 / 120, c6 = 1.0 / 720, c7 = 1.0 / 5040;
  for (; i + 8 <= len; i += 8) {
    vf8 x;
    std::memcpy(&x, row + i, sizeof x);
    const vd8 z = __builtin_convertvector(x, vd8) - max;
    vd8 t = z * 1.4426950408889634;
    const vl8 isNormal = t > -1022.0;  // false for NaN and −∞
    t = isNormal ? t : vd8{} - 1022.0;
    const vl8 n = __builtin_convertvector(t - 0.5, vl8);  // truncation toward zero, as `| 0`
    const vd8 f = (t - __builtin_convertvector(n, vd8)) * 0.6931471805599453;
    const vd8 ef = 1 + f * (1 + f * (0.5 + f * (c3 + f * (c4 + f * (c5 + f * (c6 + f * c7))))));
    const vd8 w = ef * reinterpret_cast<vd8>((n + 1023) << 52);
    acc += isNormal ? w : vd8{};
  }
  double sum = 0;
  for (int l = 0; l < 8; l++) sum += acc[l];
  for (; i < len; i++) sum += expNonPositive(row[i] - max, pow2);
  return sum;
}

double logSumExp(const float* row, int64_t len, const double* pow2) {
  const double max = maxValue(row, len);
  if (max == -INFINITY || max == INFINITY) return max;
  return max + std::log(sumExpBelow(row, len, max, pow2));
}

// weights[i] = expNonPositive((row[i] − max) · invT) for i < len, bit for bit what the scalar
// (and the TypeScript reference) computes: AVX2 without FMA (target "avx2" does not enable FMA,
// so nothing is contracted) runs four lanes of the same double operations, 2^n from exponent
// bits where n ≥ −1022 and the scalar path for the lanes below (subnormal weights).
__attribute__((target("avx2"))) void computeWeightsAvx2(const float* row, int64_t len,
                                                         double max, double invT,
                                                         const double* pow2, double* weights) {
  typedef double vd4 __attribute__((vector_size(32)));
  typedef float vf4 __attribute__((vector_size(16)));
  typedef int32_t vi4 __attribute__((vector_size(16)));
  typedef int64_t vl4 __attribute__((vector_size(32)));
  const double c3 = 1.0 / 6, c4 = 1.0 / 24, c5 = 1.0 / 120, c6 = 1.0 / 720, c7 = 1.0 / 5040;
  int64_t i = 0;
  for (; i + 4 <= len; i += 4) {
    vf4 x;
    std::memcpy(&x, row + i, sizeof x);
    const vd4 z = (__builtin_convertvector(x, vd4) - max) * invT;
    const vd4 t = z * 1.4426950408889634;
    const vl4 isNormal = t > -1022.0;  // false for NaN and −∞
    const vd4 tt = isNormal ? t : vd4{};
    const vi4 n = __builtin_convertvector(tt - 0.5, vi4);  // truncation toward zero, as `| 0`
    const vd4 f = (tt - __builtin_convertvector(n, vd4)) * 0.6931471805599453;
    const vd4 ef = 1 + f * (1 + f * (0.5 + f * (c3 + f * (c4 + f * (c5 + f * (c6 + f * c7))))));
    const vl4 bits = (__builtin_convertvector(n, vl4) + 1023) << 52;
    vd4 w = ef * reinterpret_cast<vd4>(bits);
    for (int l = 0; l < 4; l++) {
      if (!isNormal[l]) w[l] = expNonPositive(z[l], pow2);
    }
    std::memcpy(weights + i, &w, sizeof w);
  }
  for (; i < len; i++) weights[i] = expNonPositive((row[i] - max) * invT, pow2);
}

void computeWeights(const float* row, int64_t len, double max, double invT, const double* pow2,
                    double* weights) {
  static const bool hasAvx2 = __builtin_cpu_supports("avx2");
  if (hasAvx2) return computeWeightsAvx2(row, len, max, invT, pow2, weights);
  for (int64_t i = 0; i < len; i++) weights[i] = expNonPositive((row[i] - max) * invT, pow2);
}

// Per-thread work buffers (the backend samples on one thread; tests may call from several).
struct Scratch {
  std::vector<double> weights;
  std::vector<int32_t> candidates;
  std::vector<uint16_t> bucketIds;
  double bucketWeights[kNumBuckets];
  int32_t bucketCounts[kNumBuckets];
  void ensure(int64_t len) {
    if (static_cast<int64_t>(weights.size()) >= len) return;
    weights.resize(len);
    candidates.resize(len);
    bucketIds.resize(len);
  }
};

struct Row {
  const float* logits;
  int64_t len;
  double maxLogit;
  double invTemperature;
  const double* pow2;
  Scratch* s;
};

inline int bucketOf(double z) {
  const double d = -z * kBucketsPerNat;
  return d < kBucketRange ? static_cast<int>(d) : kBucketRange;
}

double fillBuckets(const Row& r, bool hasWeights) {
  Scratch& s = *r.s;
  std::fill(s.bucketWeights, s.bucketWeights + kNumBuckets, 0.0);
  std::fill(s.bucketCounts, s.bucketCounts + kNumBuckets, 0);
  double total = 0;
  if (hasWeights) computeWeights(r.logits, r.len, r.maxLogit, r.invTemperature, r.pow2, s.weights.data());
  for (int64_t i = 0; i < r.len; i++) {
    const double z = (r.logits[i] - r.maxLogit) * r.invTemperature;
    const int b = bucketOf(z);
    s.bucketIds[i] = static_cast<uint16_t>(b);
    s.bucketCounts[b]++;
    if (hasWeights) {
      const double w = s.weights[i];  // sums in index order, as the reference
      total += w;
      s.bucketWeights[b] += w;
    }
  }
  return total;
}

int boundByCount(const int32_t* counts, int64_t k) {
  int64_t count = 0;
  for (int b = 0; b < kBucketRange; b++) {
    count += counts[b];
    if (count >= k) return b;
  }
  return kBucketRange;
}

int boundByMass(const double* bucketWeights, double mass) {
  double cum = 0;
  for (int b = 0; b < kBucketRange; b++) {
    cum += bucketWeights[b];
    if (cum >= mass) return b;
  }
  return kBucketRange;
}

// Above the bound: front of candidates in id order; at the bound: the back. Returns counts.
void splitAtBound(const Row& r, int bound, int64_t* numAbove, int64_t* numAtBound) {
  Scratch& s = *r.s;
  const int64_t last = r.len - 1;
  int64_t above = 0, atBound = 0;
  for (int64_t i = 0; i < r.len; i++) {
    const int b = s.bucketIds[i];
    if (b > bound) continue;
    s.weights[i] = expNonPositive((r.logits[i] - r.maxLogit) * r.invTemperature, r.pow2);
    if (b < bound) s.candidates[above++] = static_cast<int32_t>(i);
    else s.candidates[last - atBound++] = static_cast<int32_t>(i);
  }
  *numAbove = above;
  *numAtBound = atBound;
}

// Most likely first, ties to the lower id (the comparator of top-k-top-p.ts, a total order).
void sortByWeight(int32_t* ids, int64_t n, const double* w) {
  std::sort(ids, ids + n, [w](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); });
}

int64_t nucleusLen(const int32_t* sorted, int64_t n, const double* w, double start, double target) {
  double cum = start;
  for (int64_t j = 0; j < n; j++) {
    cum += w[sorted[j]];
    if (cum >= target) return j + 1;
  }
  return n;
}

int64_t takeInto(Scratch& s, int64_t numAbove, const int32_t* atBound, int64_t numAtBound, int64_t num) {
  const int64_t numTaken = std::min(std::max<int64_t>(num, 0), numAtBound);
  std::copy(atBound, atBound + numTaken, s.candidates.data() + numAbove);
  return numTaken;
}

int64_t selectTopKTopP(const Row& r, int64_t topK, double topP) {
  Scratch& s = *r.s;
  const double* w = s.weights.data();
  int64_t numAbove = 0, numAtBound = 0;
  if (topK > 0 && topK < r.len) {
    fillBuckets(r, false);
    splitAtBound(r, boundByCount(s.bucketCounts, topK), &numAbove, &numAtBound);
    int32_t* atBound = s.candidates.data() + (r.len - numAtBound);
    sortByWeight(atBound, numAtBound, w);
    int64_t numKept = numAbove + takeInto(s, numAbove, atBound, numAtBound, topK - numAbove);
    if (topP < 1) {
      int32_t* kept = s.candidates.data();
      sortByWeight(kept, numKept, w);
      double mass = 0;
      for (int64_t j = 0; j < numKept; j++) mass += w[kept[j]];
      numKept = nucleusLen(kept, numKept, w, 0, topP * mass);
    }
    return numKept;
  }
  const double total = fillBuckets(r, true);
  const double target = topP * total;
  const int bound = boundByMass(s.bucketWeights, target);
  double massAbove = 0;
  for (int b = 0; b < bound; b++) massAbove += s.bucketWeights[b];
  splitAtBound(r, bound, &numAbove, &numAtBound);
  int32_t* atBound = s.candidates.data() + (r.len - numAtBound);
  sortByWeight(atBound, numAtBound, w);
  const int64_t numTaken = nucleusLen(atBound, numAtBound, w, massAbove, target);
  return numAbove + takeInto(s, numAbove, atBound, numAtBound, numTaken);
}

int64_t drawUnsorted(const Row& r, double minP, double u) {
  double* weights = r.s->weights.data();
  double total = 0;
  computeWeights(r.logits, r.len, r.maxLogit, r.invTemperature, r.pow2, weights);
  for (int64_t i = 0; i < r.len; i++) {
    double w = weights[i];
    if (w < minP) w = 0;
    weights[i] = w;
    total += w;
  }
  const double target = u * total;
  double cum = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < r.len; i++) {
    const double w = weights[i];
    if (w == 0) continue;
    cum += w;
    last = i;
    if (cum > target) return i;
  }
  return last;
}

// sampleTemperature of truncation.ts.
int64_t sampleTemperature(const float* row, int64_t len, double temperature, int64_t topK,
                          double topP, double minP, double u, Scratch& s) {
  const double maxLogit = row[argmax(row, len)];
  if (!std::isfinite(maxLogit)) return argmax(row, len);
  s.ensure(len);
  const Row r{row, len, maxLogit, 1 / temperature, pow2Table().data(), &s};
  const bool hasTopK = topK > 0 && topK < len;
  if (!hasTopK && !(topP < 1)) return drawUnsorted(r, minP, u);
  int64_t numKept = selectTopKTopP(r, topK, topP);
  int32_t* list = s.candidates.data();
  const double* w = s.weights.data();
  if (minP > 0) {
    int64_t numPassing = 0;
    for (int64_t j = 0; j < numKept; j++) {
      const int32_t id = list[j];
      if (w[id] >= minP) list[numPassing++] = id;
    }
    numKept = numPassing;
  }
  double mass = 0;
  for (int64_t j = 0; j < numKept; j++) mass += w[list[j]];
  const double target = u * mass;
  double cum = 0;
  for (int64_t j = 0; j < numKept; j++) {
    cum += w[list[j]];
    if (cum > target) return list[j];
  }
  return list[numKept - 1];
}

// topLogprobs of logprobs.ts: insertion into a list of at most numTop, ties to the lower id.
int64_t topLogprobs(const float* row, int64_t len, int64_t numTop, double lse, double* out) {
  const int64_t n = std::min(numTop, len);
  if (n <= 0) return 0;
  std::vector<int64_t> ids(n);
  std::vector<double> values(n);
  int64_t count = 0;
  for (int64_t i = 0; i < len; i++) {
    const double raw = row[i];
    const double v = std::isnan(raw) ? -INFINITY : raw;
    if (count == n && !(v > values[n - 1])) continue;
    int64_t j = count < n ? count : n - 1;
    while (j > 0 && values[j - 1] < v) {
      ids[j] = ids[j - 1];
      values[j] = values[j - 1];
      j--;
    }
    ids[j] = i;
    values[j] = v;
    if (count < n) count++;
  }
  for (int64_t j = 0; j < count; j++) {
    out[2 * j] = static_cast<double>(ids[j]);
    out[2 * j + 1] = values[j] - lse;
  }
  return count;
}

Napi::Float64Array float64Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Float64Array");
  }
  return v.As<Napi::Float64Array>();
}

// sampleRow(row, raw, params, out) → token id. row: processed logits the token is drawn from;
// raw: the model's logits for logprobs (may be the same array). params: Float64Array
// [temperature, topK, topP, minP, u, numTopLogprobs]. out: Float64Array [2 + 2·numTop]:
// out[0] = logprob of the token, out[1] = number of top entries, then (id, logprob) pairs.
Napi::Value SampleRow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, "sampleRow takes 4 arguments");
  Napi::Float32Array row = float32Arg(info, 0, "row");
  Napi::Float32Array raw = float32Arg(info, 1, "raw");
  Napi::Float64Array params = float64Arg(info, 2, "params");
  Napi::Float64Array out = float64Arg(info, 3, "out");
  const int64_t len = static_cast<int64_t>(row.ElementLength());
  if (len < 1 || static_cast<int64_t>(raw.ElementLength()) != len) {
    throw Napi::RangeError::New(env, "sampleRow: row and raw must have the same positive length");
  }
  requireLen(env, params, 6, "params");
  const double* p = params.Data();
  const double temperature = p[0], topP = p[2], minP = p[3], u = p[4];
  const int64_t topK = static_cast<int64_t>(p[1]);
  const int64_t numTop = static_cast<int64_t>(p[5]);
  if (!(temperature >= 0 && std::isfinite(temperature)) || topK < 0 || numTop < 0 ||
      !(topP >= 0 && topP <= 1) || !(minP >= 0 && minP <= 1) || !(u >= 0 && u < 1)) {
    throw Napi::RangeError::New(env, "sampleRow: invalid sampling parameters");
  }
  requireLen(env, out, 2 + 2 * std::min(numTop, len), "out");
  thread_local Scratch scratch;
  const int64_t tokenId =
      temperature == 0 ? argmax(row.Data(), len)
                       : sampleTemperature(row.Data(), len, temperature, topK, topP, minP, u, scratch);
  const double lse = logSumExp(raw.Data(), len, pow2Table().data());
  const double v = raw.Data()[tokenId];
  double* o = out.Data();
  o[0] = std::isnan(v) ? -INFINITY : v - lse;
  o[1] = static_cast<double>(topLogprobs(raw.Data(), len, numTop, lse, o + 2));
  return Napi::Number::New(env, static_cast<double>(tokenId));
}

}  // namespace

void registerSampling(Napi::Env env, Napi::Object exports) {
  exports.Set("sampleRow", Napi::Function::New(env, SampleRow, "sampleRow"));
}

}  // namespace kiln
