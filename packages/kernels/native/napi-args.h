// Argument checks shared by the addon's functions: every array is a typed array of the right
// kind and long enough for its shape, so a bad call throws in JavaScript instead of reading or
// writing out of bounds.
#pragma once

#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace kiln {

// Reads argument i as a Float32Array. Data() already points at byteOffset, so views just work.
inline Napi::Float32Array float32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Float32Array");
  }
  return v.As<Napi::Float32Array>();
}

inline Napi::Int32Array int32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be an Int32Array");
  }
  return v.As<Napi::Int32Array>();
}

// An integer in [0, 2^31): every product of two such dimensions stays exact in int64.
inline int64_t dimArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d < 2147483648.0) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be an integer in [0, 2^31)");
  }
  return static_cast<int64_t>(d);
}

// A paged KV pool (src/cpu/kv-cache.ts): a Float32Array, or a Uint16Array of bfloat16 bits
// (KILN_KV_CACHE_DTYPE=bf16).
struct KvPoolArg {
  void* data;
  int64_t len;  // elements
  bool bf16;
};

inline KvPoolArg kvPoolArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  const bool isTyped = v.IsTypedArray();
  const napi_typedarray_type type =
      isTyped ? v.As<Napi::TypedArray>().TypedArrayType() : napi_int8_array;
  if (type != napi_float32_array && type != napi_uint16_array) {
    throw Napi::TypeError::New(
        info.Env(), std::string(name) + " must be a Float32Array or a Uint16Array (bf16)");
  }
  Napi::TypedArray arr = v.As<Napi::TypedArray>();
  auto* bytes = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  return {bytes, static_cast<int64_t>(arr.ElementLength()), type == napi_uint16_array};
}

// The bfloat16 bits of x, rounded to nearest, ties to even; NaN stays a quiet NaN.
inline uint16_t f32ToBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

template <typename TypedArray>
void requireLen(const Napi::Env& env, const TypedArray& arr, int64_t needed, const char* name) {
  if (static_cast<int64_t>(arr.ElementLength()) < needed) {
    throw Napi::RangeError::New(env, std::string(name) + " is shorter than its shape");
  }
}

// Registration hooks of the addon's parts, called from Init (gemm.cc).
void registerPackedMatmul(Napi::Env env, Napi::Object exports);
void registerAttention(Napi::Env env, Napi::Object exports);
void registerElementwise(Napi::Env env, Napi::Object exports);
void registerLora(Napi::Env env, Napi::Object exports);
void registerSampling(Napi::Env env, Napi::Object exports);
void registerQuantMatmul(Napi::Env env, Napi::Object exports);
void registerShmCollective(Napi::Env env, Napi::Object exports);
void registerTcpCollective(Napi::Env env, Napi::Object exports);

}  // namespace kiln
