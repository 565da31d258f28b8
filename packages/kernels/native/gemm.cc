// Native fp32 GEMM for the CPU backend: a thin N-API shim over oneDNN's dnnl_sgemm (ADR 0002).
//
// Threads: Debian's oneDNN runs on OpenMP (libgomp), whose thread team belongs to the calling
// thread. The forward pass calls from its Node worker_thread, which becomes the master of the
// only compute pool in the process; libgomp creates the helpers on the first call and releases
// them when that thread exits. The thread count is an OpenMP per-thread setting, so it is applied
// on the calling thread, per call.
//
// Loading: libgomp reads its environment once, in its constructor. Its default makes idle
// helpers spin for milliseconds, which on a small machine starves whatever else wants the core
// (measured in ADR 0002), so unless the operator chose a policy we ask for a short spin before
// the library loads. That must happen in C: process.env in a worker_thread is a copy. Hence
// oneDNN is opened with dlopen rather than linked, which also turns a missing libdnnl.so.2 into
// a clear load error instead of an unresolved-symbol failure.

#include <dlfcn.h>
#include <napi.h>
#include <oneapi/dnnl/dnnl.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

namespace {

// Helpers spin about 0.1-0.3 ms before sleeping: long enough to stay warm between the GEMMs
// of one forward step, short enough to give the core back soon after.
constexpr const char* kDefaultSpinCount = "10000";

// The soname of the oneDNN major version whose header this file is compiled against.
#define KILN_STR2(x) #x
#define KILN_STR(x) KILN_STR2(x)
constexpr const char* kDnnlSoname = "libdnnl.so." KILN_STR(DNNL_VERSION_MAJOR);

struct Library {
  decltype(&dnnl_sgemm) sgemm = nullptr;
  decltype(&dnnl_version) version = nullptr;
  decltype(&dnnl_get_effective_cpu_isa) effectiveIsa = nullptr;
  int (*ompGetMaxThreads)() = nullptr;
  void (*ompSetNumThreads)(int) = nullptr;
  std::string error;  // empty once loaded
};

template <typename Fn>
bool trySym(void* handle, const char* name, Fn* fn, std::string* error) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr) *error = std::string("symbol ") + name + " not found";
  return *fn != nullptr;
}

// Opens oneDNN once per process (addon Init runs once per thread that loads it).
const Library& library() {
  static Library lib;
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("OMP_WAIT_POLICY") == nullptr && std::getenv("GOMP_SPINCOUNT") == nullptr) {
      setenv("GOMP_SPINCOUNT", kDefaultSpinCount, 0);
    }
    void* dnnl = dlopen(kDnnlSoname, RTLD_NOW | RTLD_LOCAL);
    if (dnnl == nullptr) {
      lib.error = std::string(dlerror()) + " (install Debian's libdnnl2 / libdnnl-dev)";
      return;
    }
    // libdnnl links libgomp, so it is loaded now; RTLD_NOLOAD only looks it up.
    void* gomp = dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (gomp == nullptr) {
      lib.error = std::string(kDnnlSoname) + " is not built with GNU OpenMP (libgomp)";
      return;
    }
    std::string error;
    bool isComplete = trySym(dnnl, "dnnl_sgemm", &lib.sgemm, &error) &&
                      trySym(dnnl, "dnnl_version", &lib.version, &error) &&
                      trySym(dnnl, "dnnl_get_effective_cpu_isa", &lib.effectiveIsa, &error) &&
                      trySym(gomp, "omp_get_max_threads", &lib.ompGetMaxThreads, &error) &&
                      trySym(gomp, "omp_set_num_threads", &lib.ompSetNumThreads, &error);
    if (!isComplete) lib.error = error;
  });
  return lib;
}

// Reads argument i as a Float32Array. Data() already points at byteOffset, so views just work.
Napi::Float32Array float32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Float32Array");
  }
  return v.As<Napi::Float32Array>();
}

int64_t dimArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  // Below 2^31 every product of two dimensions stays exact in int64 and dnnl_dim_t.
  if (!(d >= 0 && d < 2147483648.0) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be an integer in [0, 2^31)");
  }
  return static_cast<int64_t>(d);
}

void requireLen(const Napi::Env& env, const Napi::Float32Array& arr, int64_t needed,
                const char* name) {
  if (static_cast<int64_t>(arr.ElementLength()) < needed) {
    throw Napi::RangeError::New(env, std::string(name) + " is shorter than its shape");
  }
}

// sgemmTransB(a, w, out, m, n, k, accumulate, numThreads): out[M,N] = a[M,K]·w[N,K]ᵀ (+ out).
// numThreads 0 keeps the calling thread's OpenMP default (OMP_NUM_THREADS, else its CPUs).
Napi::Value SgemmTransB(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Library& lib = library();
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
  if (numThreads > 0 && lib.ompGetMaxThreads() != numThreads) {
    lib.ompSetNumThreads(static_cast<int>(numThreads));
  }
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
  const Library& lib = library();
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const Library& lib = library();
  if (!lib.error.empty()) throw Napi::Error::New(env, "kiln_gemm: " + lib.error);
  exports.Set("sgemmTransB", Napi::Function::New(env, SgemmTransB, "sgemmTransB"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  return exports;
}

}  // namespace

NODE_API_MODULE(kiln_gemm, Init)
