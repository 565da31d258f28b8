// Row-wise operations of the forward pass that are too slow in JavaScript at batch sizes of
// 8 and more. Each mirrors a TypeScript function with the same contract, on the calling thread:
//
// siluMul(out, gateUp, numRows, ffnLen)  (src/cpu/elementwise.ts): out[r, i] =
//   silu(gateUp[r, i]) × gateUp[r, ffnLen + i]; float32 with a polynomial exp (relative error
//   ~3e-7 against float64).
// rmsNorm(out, x, weight, numRows, dim, eps)  (elementwise.ts): float32 sum of squares in
//   16 lanes (relative error ~1e-7 against the float64 sum); out may alias x.
// applyRope(buf, numTokens, rowStride, colOffset, numHeads, headDim, cos, sin)  (rope.ts).
// writeKv(keys, values, qkv, numTokens, rowStride, kOffset, vOffset, slotMapping, numKvHeads,
//   blockSize, headDim)  (kv-cache.ts writeTokens); throws RangeError for a slot outside the pool.
//   keys and values are Float32Arrays, or Uint16Arrays of bfloat16 bits (rounded to nearest,
//   ties to even, as writeKvRowsBf16).
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "napi-args.h"
#include "simd.h"

namespace kiln {
namespace {

// silu(g) = g · sigmoid(g), with exp taken of −|g| ≤ 0 only, so it never overflows.
KILN_INLINE vf16 silu(vf16 g) {
  const vf16 zero = vf16{};
  const vf16 e = expNonPositive(g < zero ? g : -g);
  const vf16 one = splat(1.0f);
  return g * ((g < zero ? e : one) / (one + e));
}

KILN_INLINE float siluScalar(float g) {
  vf16 v = splat(g);
  return silu(v)[0];
}

KILN_MULTIVERSION void siluMulRows(float* out, const float* gateUp, int64_t numRows,
                                   int64_t ffnLen) {
  const int64_t numFull = ffnLen / kLanes * kLanes;
  for (int64_t r = 0; r < numRows; r++) {
    const float* gate = gateUp + r * 2 * ffnLen;
    const float* up = gate + ffnLen;
    float* o = out + r * ffnLen;
    for (int64_t i = 0; i < numFull; i += kLanes) store(o + i, silu(load(gate + i)) * load(up + i));
    for (int64_t i = numFull; i < ffnLen; i++) o[i] = siluScalar(gate[i]) * up[i];
  }
}

KILN_MULTIVERSION void rmsNormRows(float* out, const float* x, const float* weight,
                                   int64_t numRows, int64_t dim, float eps) {
  const int64_t numFull = dim / kLanes * kLanes;
  for (int64_t r = 0; r < numRows; r++) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    vf16 acc = vf16{};
    for (int64_t i = 0; i < numFull; i += kLanes) {
      const vf16 v = load(xr + i);
      acc += v * v;
    }
    double sumSq = sumLanes(acc);
    for (int64_t i = numFull; i < dim; i++) sumSq += static_cast<double>(xr[i]) * xr[i];
    const float invRms = static_cast<float>(1.0 / std::sqrt(sumSq / static_cast<double>(dim) + eps));
    // HF rounds the normalised activations to f32 before scaling by weight.
    for (int64_t i = 0; i < numFull; i += kLanes) store(o + i, load(xr + i) * invRms * load(weight + i));
    for (int64_t i = numFull; i < dim; i++) o[i] = (xr[i] * invRms) * weight[i];
  }
}

KILN_MULTIVERSION void ropeRows(float* buf, int64_t numTokens, int64_t rowStride, int64_t colOffset,
                                int64_t numHeads, int64_t headDim, const float* cos,
                                const float* sin) {
  const int64_t halfDim = headDim / 2;
  const int64_t numFull = halfDim / kLanes * kLanes;
  for (int64_t t = 0; t < numTokens; t++) {
    const float* c = cos + t * halfDim;
    const float* s = sin + t * halfDim;
    for (int64_t h = 0; h < numHeads; h++) {
      float* x1 = buf + t * rowStride + colOffset + h * headDim;
      float* x2 = x1 + halfDim;
      for (int64_t i = 0; i < numFull; i += kLanes) {
        const vf16 a = load(x1 + i), b = load(x2 + i), cv = load(c + i), sv = load(s + i);
        store(x1 + i, a * cv - b * sv);
        store(x2 + i, b * cv + a * sv);
      }
      for (int64_t i = numFull; i < halfDim; i++) {
        const float a = x1[i], b = x2[i];
        x1[i] = a * c[i] - b * s[i];
        x2[i] = b * c[i] + a * s[i];
      }
    }
  }
}

Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6) throw Napi::TypeError::New(env, "rmsNorm takes 6 arguments");
  Napi::Float32Array out = float32Arg(info, 0, "out");
  Napi::Float32Array x = float32Arg(info, 1, "x");
  Napi::Float32Array weight = float32Arg(info, 2, "weight");
  const int64_t numRows = dimArg(info, 3, "numRows");
  const int64_t dim = dimArg(info, 4, "dim");
  const float eps = info[5].As<Napi::Number>().FloatValue();
  requireLen(env, out, numRows * dim, "out");
  requireLen(env, x, numRows * dim, "x");
  requireLen(env, weight, dim, "weight");
  rmsNormRows(out.Data(), x.Data(), weight.Data(), numRows, dim, eps);
  return env.Undefined();
}

Napi::Value ApplyRope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 8) throw Napi::TypeError::New(env, "applyRope takes 8 arguments");
  Napi::Float32Array buf = float32Arg(info, 0, "buf");
  const int64_t numTokens = dimArg(info, 1, "numTokens");
  const int64_t rowStride = dimArg(info, 2, "rowStride");
  const int64_t colOffset = dimArg(info, 3, "colOffset");
  const int64_t numHeads = dimArg(info, 4, "numHeads");
  const int64_t headDim = dimArg(info, 5, "headDim");
  Napi::Float32Array cos = float32Arg(info, 6, "cos");
  Napi::Float32Array sin = float32Arg(info, 7, "sin");
  if (numTokens == 0 || numHeads == 0) return env.Undefined();
  if (colOffset + numHeads * headDim > rowStride) {
    throw Napi::RangeError::New(env, "applyRope: heads overflow the row");
  }
  requireLen(env, buf, (numTokens - 1) * rowStride + colOffset + numHeads * headDim, "buf");
  requireLen(env, cos, numTokens * (headDim / 2), "cos");
  requireLen(env, sin, numTokens * (headDim / 2), "sin");
  ropeRows(buf.Data(), numTokens, rowStride, colOffset, numHeads, headDim, cos.Data(), sin.Data());
  return env.Undefined();
}

// One KV head's row: a plain copy into an f32 pool, rounded to bfloat16 into a bf16 one.
void copyKvRow(const KvPoolArg& pool, int64_t at, const float* src, int64_t n) {
  if (!pool.bf16) {
    std::memcpy(static_cast<float*>(pool.data) + at, src, 4 * n);
    return;
  }
  uint16_t* dst = static_cast<uint16_t*>(pool.data) + at;
  for (int64_t i = 0; i < n; i++) dst[i] = f32ToBf16(src[i]);
}

Napi::Value WriteKv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 11) throw Napi::TypeError::New(env, "writeKv takes 11 arguments");
  const KvPoolArg keys = kvPoolArg(info, 0, "keys");
  const KvPoolArg values = kvPoolArg(info, 1, "values");
  Napi::Float32Array qkv = float32Arg(info, 2, "qkv");
  const int64_t numTokens = dimArg(info, 3, "numTokens");
  const int64_t rowStride = dimArg(info, 4, "rowStride");
  const int64_t kOffset = dimArg(info, 5, "kOffset");
  const int64_t vOffset = dimArg(info, 6, "vOffset");
  Napi::Int32Array slots = int32Arg(info, 7, "slotMapping");
  const int64_t numKvHeads = dimArg(info, 8, "numKvHeads");
  const int64_t blockSize = dimArg(info, 9, "blockSize");
  const int64_t headDim = dimArg(info, 10, "headDim");
  const int64_t kvDim = numKvHeads * headDim;
  if (keys.bf16 != values.bf16) throw Napi::TypeError::New(env, "writeKv: keys and values differ");
  if (numTokens == 0 || kvDim == 0) return env.Undefined();
  if (blockSize < 1 || std::max(kOffset, vOffset) + kvDim > rowStride) {
    throw Napi::RangeError::New(env, "writeKv: bad geometry");
  }
  requireLen(env, qkv, (numTokens - 1) * rowStride + std::max(kOffset, vOffset) + kvDim, "qkv");
  requireLen(env, slots, numTokens, "slotMapping");
  if (values.len < keys.len) throw Napi::RangeError::New(env, "values is shorter than its shape");
  const int64_t numSlots = keys.len / kvDim;
  const int64_t headLen = blockSize * headDim;
  for (int64_t t = 0; t < numTokens; t++) {
    const int64_t slot = slots.Data()[t];
    if (slot < 0 || slot >= numSlots / blockSize * blockSize) {
      throw Napi::RangeError::New(env, "writeKv: slot outside the KV pool");
    }
    const int64_t block = slot / blockSize;
    const int64_t base = block * numKvHeads * headLen + (slot - block * blockSize) * headDim;
    const float* row = qkv.Data() + t * rowStride;
    for (int64_t g = 0; g < numKvHeads; g++) {
      copyKvRow(keys, base + g * headLen, row + kOffset + g * headDim, headDim);
      copyKvRow(values, base + g * headLen, row + vOffset + g * headDim, headDim);
    }
  }
  return env.Undefined();
}

Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, "siluMul takes 4 arguments");
  Napi::Float32Array out = float32Arg(info, 0, "out");
  Napi::Float32Array gateUp = float32Arg(info, 1, "gateUp");
  const int64_t numRows = dimArg(info, 2, "numRows");
  const int64_t ffnLen = dimArg(info, 3, "ffnLen");
  requireLen(env, out, numRows * ffnLen, "out");
  requireLen(env, gateUp, numRows * 2 * ffnLen, "gateUp");
  siluMulRows(out.Data(), gateUp.Data(), numRows, ffnLen);
  return env.Undefined();
}

}  // namespace

void registerElementwise(Napi::Env env, Napi::Object exports) {
  exports.Set("siluMul", Napi::Function::New(env, SiluMul, "siluMul"));
  exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm, "rmsNorm"));
  exports.Set("applyRope", Napi::Function::New(env, ApplyRope, "applyRope"));
  exports.Set("writeKv", Napi::Function::New(env, WriteKv, "writeKv"));
}

}  // namespace kiln
