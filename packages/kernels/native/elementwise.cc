// Row-wise operations of the forward pass that are too slow in JavaScript at batch sizes of
// 8 and more (see src/cpu/elementwise.ts for the TypeScript versions and their contracts).
//
// siluMul(out, gateUp, numRows, ffnLen): out[r, i] = silu(gateUp[r, i]) × gateUp[r, ffnLen + i]
//   with gateUp [numRows, 2 × ffnLen] (gate, then up) and out [numRows, ffnLen]. Float32 with
//   a polynomial exp (relative error ~3e-7 against float64), on the calling thread.
#include <napi.h>

#include <cstdint>

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
}

}  // namespace kiln
