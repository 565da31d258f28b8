// Native kernels of the CPU backend (ADR 0002), one N-API addon over Debian's oneDNN:
//   sgemmTransB   oneDNN's dnnl_sgemm on plain row-major weights (this file)
//   packWeights / matmulPacked   the matmul primitive on weights reordered once (packed-matmul.cc)
//   pagedAttention   decode and short-chunk attention over the paged KV pool (attention.cc)
//   siluMul   the FFN activation (elementwise.cc)
//
// Threads: Debian's oneDNN runs on OpenMP (libgomp), whose thread team belongs to the calling
// thread. The forward pass calls from its Node worker_thread, which becomes the master of the
// only compute pool in the process; libgomp creates the helpers on the first call and releases
// them when that thread exits. The thread count is an OpenMP per-thread setting, so it is applied
// on the calling thread, per call. Libraries are opened with dlopen (onednn.cc says why).

#include <napi.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "huge-pages.h"
#include "napi-args.h"
#include "onednn.h"

namespace kiln {
namespace {

// sgemmTransB(a, w, out, m, n, k, accumulate, numThreads): out[M,N] = a[M,K]·w[N,K]ᵀ (+ out).
// numThreads 0 keeps the calling thread's OpenMP default (OMP_NUM_THREADS, else its CPUs).
Napi::Value SgemmTransB(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Onednn& lib = onednn();
  if (info.Length() < 8) throw Napi::TypeError::New(env, "sgemmTransB takes 8 arguments");
  Napi::Float32Array a = float32Arg(info, 0, "a");
  Napi::Float32Array w = float32Arg(info, 1, "w");
  Napi::Float32Array out = float32Arg(info, 2, "out");
  int64_t m = dimArg(info, 3, "m");
  int64_t n = dimArg(info, 4, "n");
  int64_t k = dimArg(info, 5, "k");
  bool isAccumulate = info[6].ToBoolean().Value();
  int64_t numThreads = dimArg(info, 7, "numThreads");
  requireLen(env, a, m * k, "a");
  requireLen(env, w, n * k, "w");
  requireLen(env, out, m * n, "out");
  if (m == 0 || n == 0) return env.Undefined();
  if (k == 0) {
    // dnnl_sgemm rejects lda = 0; an empty sum is 0.
    if (!isAccumulate) std::memset(out.Data(), 0, sizeof(float) * m * n);
    return env.Undefined();
  }
  setNumThreads(static_cast<int>(numThreads));
  // Row-major: A is a [M,K] (lda K), B is wᵀ read in place from w [N,K] (ldb K), C is out [M,N].
  dnnl_status_t status = lib.sgemm('N', 'T', m, n, k, 1.0f, a.Data(), k, w.Data(), k,
                                   isAccumulate ? 1.0f : 0.0f, out.Data(), n);
  if (status != dnnl_success) {
    throw Napi::Error::New(env, "dnnl_sgemm failed with status " + std::to_string(status));
  }
  return env.Undefined();
}

const char* isaName(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

// info(): { library, version, isa, maxThreads, waitPolicy } as seen from the calling thread.
Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Onednn& lib = onednn();
  const dnnl_version_t* v = lib.version();
  const char* spinCount = std::getenv("GOMP_SPINCOUNT");
  const char* waitPolicy = std::getenv("OMP_WAIT_POLICY");
  Napi::Object o = Napi::Object::New(env);
  o.Set("library", "onednn");
  o.Set("version", std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                       std::to_string(v->patch));
  o.Set("isa", isaName(lib.effectiveIsa()));
  o.Set("maxThreads", lib.ompGetMaxThreads());
  o.Set("waitPolicy", spinCount != nullptr    ? std::string("GOMP_SPINCOUNT=") + spinCount
                      : waitPolicy != nullptr ? std::string("OMP_WAIT_POLICY=") + waitPolicy
                                              : std::string("libgomp default"));
  return o;
}

}  // namespace

Napi::Object initAddon(Napi::Env env, Napi::Object exports) {
  const Onednn& lib = onednn();
  if (!lib.error.empty()) throw Napi::Error::New(env, "kiln_gemm: " + lib.error);
  exports.Set("sgemmTransB", Napi::Function::New(env, SgemmTransB, "sgemmTransB"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  registerPackedMatmul(env, exports);
  registerAttention(env, exports);
  registerElementwise(env, exports);
  registerLora(env, exports);
  registerSampling(env, exports);
  registerQuantMatmul(env, exports);  // quant-matmul.cc (ADR 0020)
  registerShmCollective(env, exports);
  registerTcpCollective(env, exports);
  registerHugePages(env, exports);  // huge-pages.cc
  return exports;
}

}  // namespace kiln

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  return kiln::initAddon(env, exports);
}

NODE_API_MODULE(kiln_gemm, Init)
