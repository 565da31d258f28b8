// oneDNN and libgomp, opened at run time (see onednn.cc for why dlopen and not linking).
#pragma once

#include <oneapi/dnnl/dnnl.h>

#include <string>

namespace kiln {

// The C API symbols the addon calls, resolved once per process. Every pointer is set when
// `error` is empty.
struct Onednn {
  // BLAS-like entry (gemm.cc).
  decltype(&dnnl_sgemm) sgemm = nullptr;
  decltype(&dnnl_version) version = nullptr;
  decltype(&dnnl_get_effective_cpu_isa) effectiveIsa = nullptr;
  // Primitive API (packed-matmul.cc).
  decltype(&dnnl_engine_create) engineCreate = nullptr;
  decltype(&dnnl_stream_create) streamCreate = nullptr;
  decltype(&dnnl_stream_destroy) streamDestroy = nullptr;
  decltype(&dnnl_stream_wait) streamWait = nullptr;
  decltype(&dnnl_memory_desc_init_by_tag) memoryDescInitByTag = nullptr;
  decltype(&dnnl_memory_desc_get_size) memoryDescGetSize = nullptr;
  decltype(&dnnl_memory_desc_equal) memoryDescEqual = nullptr;
  decltype(&dnnl_memory_create) memoryCreate = nullptr;
  decltype(&dnnl_memory_set_data_handle) memorySetDataHandle = nullptr;
  decltype(&dnnl_memory_destroy) memoryDestroy = nullptr;
  decltype(&dnnl_matmul_desc_init) matmulDescInit = nullptr;
  decltype(&dnnl_reorder_primitive_desc_create) reorderPrimitiveDescCreate = nullptr;
  decltype(&dnnl_primitive_desc_create) primitiveDescCreate = nullptr;
  decltype(&dnnl_primitive_desc_query) primitiveDescQuery = nullptr;
  decltype(&dnnl_primitive_desc_query_md) primitiveDescQueryMd = nullptr;
  decltype(&dnnl_primitive_desc_destroy) primitiveDescDestroy = nullptr;
  decltype(&dnnl_primitive_create) primitiveCreate = nullptr;
  decltype(&dnnl_primitive_execute) primitiveExecute = nullptr;
  decltype(&dnnl_primitive_destroy) primitiveDestroy = nullptr;
  decltype(&dnnl_primitive_attr_create) primitiveAttrCreate = nullptr;
  decltype(&dnnl_primitive_attr_destroy) primitiveAttrDestroy = nullptr;
  decltype(&dnnl_primitive_attr_set_post_ops) primitiveAttrSetPostOps = nullptr;
  decltype(&dnnl_post_ops_create) postOpsCreate = nullptr;
  decltype(&dnnl_post_ops_destroy) postOpsDestroy = nullptr;
  decltype(&dnnl_post_ops_append_sum) postOpsAppendSum = nullptr;
  // libgomp, the OpenMP runtime oneDNN is built on: one thread team per calling thread, shared
  // by oneDNN and the addon's own parallel loops (attention.cc).
  int (*ompGetMaxThreads)() = nullptr;
  void (*ompSetNumThreads)(int) = nullptr;
  int (*ompGetThreadNum)() = nullptr;
  int (*ompGetNumThreads)() = nullptr;
  // What `#pragma omp parallel` compiles to: runs fn(data) on a team of numThreads (0: the
  // calling thread's default), the caller being thread 0, and returns when all are done.
  void (*gompParallel)(void (*fn)(void*), void* data, unsigned numThreads, unsigned flags) =
      nullptr;
  std::string error;  // empty once loaded
};

// Opens the libraries on the first call (any thread); later calls return the same object.
const Onednn& onednn();

// Applies a thread count to the calling thread's OpenMP team; 0 keeps its current setting.
void setNumThreads(int numThreads);

// "dnnl_<what> failed with status <s>" for error messages.
std::string statusMessage(const char* what, dnnl_status_t status);

}  // namespace kiln
