// Loading: libgomp reads its environment once, in its constructor. Its default makes idle
// helpers spin for milliseconds, which on a small machine starves whatever else wants the core
// (measured in ADR 0002), so unless the operator chose a policy we ask for a short spin before
// the library loads. That must happen in C: process.env in a worker_thread is a copy. Hence
// oneDNN is opened with dlopen rather than linked, which also turns a missing libdnnl.so.2 into
// a clear load error instead of an unresolved-symbol failure. The addon's own parallel loops
// call libgomp through the same handle, so the process has one OpenMP runtime and each calling
// thread one team.
#include "onednn.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace kiln {
namespace {

// Helpers spin some 10-20 µs before sleeping: enough to bridge the regions of one forward step
// (a gemm, the row kernels after it, the next gemm), short enough that a helper does not hold a
// core another process wants. Against 10000: as fast on a quiet machine, 1.4-2.5× faster when
// another process keeps a core busy (ADR 0002).
constexpr const char* kDefaultSpinCount = "1000";

// The soname of the oneDNN major version whose header this file is compiled against.
#define KILN_STR2(x) #x
#define KILN_STR(x) KILN_STR2(x)
constexpr const char* kDnnlSoname = "libdnnl.so." KILN_STR(DNNL_VERSION_MAJOR);

template <typename Fn>
bool trySym(void* handle, const char* name, Fn* fn, std::string* error) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr && error->empty()) *error = std::string("symbol ") + name + " not found";
  return *fn != nullptr;
}

void resolveDnnl(void* dnnl, Onednn* lib, std::string* error) {
  trySym(dnnl, "dnnl_sgemm", &lib->sgemm, error);
  trySym(dnnl, "dnnl_version", &lib->version, error);
  trySym(dnnl, "dnnl_get_effective_cpu_isa", &lib->effectiveIsa, error);
  trySym(dnnl, "dnnl_engine_create", &lib->engineCreate, error);
  trySym(dnnl, "dnnl_stream_create", &lib->streamCreate, error);
  trySym(dnnl, "dnnl_stream_destroy", &lib->streamDestroy, error);
  trySym(dnnl, "dnnl_stream_wait", &lib->streamWait, error);
  trySym(dnnl, "dnnl_memory_desc_init_by_tag", &lib->memoryDescInitByTag, error);
  trySym(dnnl, "dnnl_memory_desc_get_size", &lib->memoryDescGetSize, error);
  trySym(dnnl, "dnnl_memory_desc_equal", &lib->memoryDescEqual, error);
  trySym(dnnl, "dnnl_memory_create", &lib->memoryCreate, error);
  trySym(dnnl, "dnnl_memory_set_data_handle", &lib->memorySetDataHandle, error);
  trySym(dnnl, "dnnl_memory_destroy", &lib->memoryDestroy, error);
  trySym(dnnl, "dnnl_matmul_desc_init", &lib->matmulDescInit, error);
  trySym(dnnl, "dnnl_reorder_primitive_desc_create", &lib->reorderPrimitiveDescCreate, error);
  trySym(dnnl, "dnnl_primitive_desc_create", &lib->primitiveDescCreate, error);
  trySym(dnnl, "dnnl_primitive_desc_query", &lib->primitiveDescQuery, error);
  trySym(dnnl, "dnnl_primitive_desc_query_md", &lib->primitiveDescQueryMd, error);
  trySym(dnnl, "dnnl_primitive_desc_destroy", &lib->primitiveDescDestroy, error);
  trySym(dnnl, "dnnl_primitive_create", &lib->primitiveCreate, error);
  trySym(dnnl, "dnnl_primitive_execute", &lib->primitiveExecute, error);
  trySym(dnnl, "dnnl_primitive_destroy", &lib->primitiveDestroy, error);
  trySym(dnnl, "dnnl_primitive_attr_create", &lib->primitiveAttrCreate, error);
  trySym(dnnl, "dnnl_primitive_attr_destroy", &lib->primitiveAttrDestroy, error);
  trySym(dnnl, "dnnl_primitive_attr_set_post_ops", &lib->primitiveAttrSetPostOps, error);
  trySym(dnnl, "dnnl_post_ops_create", &lib->postOpsCreate, error);
  trySym(dnnl, "dnnl_post_ops_destroy", &lib->postOpsDestroy, error);
  trySym(dnnl, "dnnl_post_ops_append_sum", &lib->postOpsAppendSum, error);
}

void resolveGomp(void* gomp, Onednn* lib, std::string* error) {
  trySym(gomp, "omp_get_max_threads", &lib->ompGetMaxThreads, error);
  trySym(gomp, "omp_set_num_threads", &lib->ompSetNumThreads, error);
  trySym(gomp, "omp_get_thread_num", &lib->ompGetThreadNum, error);
  trySym(gomp, "omp_get_num_threads", &lib->ompGetNumThreads, error);
  trySym(gomp, "GOMP_parallel", &lib->gompParallel, error);
}

}  // namespace

const Onednn& onednn() {
  static Onednn lib;
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("OMP_WAIT_POLICY") == nullptr && std::getenv("GOMP_SPINCOUNT") == nullptr) {
      setenv("GOMP_SPINCOUNT", kDefaultSpinCount, 0);
    }
    // KILN_DISABLE_ONEDNN=1: the tiers that must run without oneDNN are tested with it (ADR 0022).
    const char* disabled = std::getenv("KILN_DISABLE_ONEDNN");
    if (disabled != nullptr && std::string(disabled) == "1") {
      lib.error = "oneDNN disabled by KILN_DISABLE_ONEDNN=1";
      return;
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
    resolveDnnl(dnnl, &lib, &error);
    resolveGomp(gomp, &lib, &error);
    lib.error = error;
  });
  return lib;
}

void setNumThreads(int numThreads) {
  const Onednn& lib = onednn();
  if (numThreads > 0 && lib.ompGetMaxThreads() != numThreads) lib.ompSetNumThreads(numThreads);
}

std::string statusMessage(const char* what, dnnl_status_t status) {
  return std::string(what) + " failed with status " + std::to_string(static_cast<int>(status));
}

}  // namespace kiln
