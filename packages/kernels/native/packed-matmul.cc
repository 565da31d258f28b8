// out[M,N] = a[M,K]·w[N,K]ᵀ (+ out) through oneDNN's matmul primitive on weights reordered
// once into the layout the primitive prefers (ADR 0002: about 2× dnnl_sgemm at M = 8-32).
//
// packWeights(w, n, k, numThreads) → handle: asks the primitive which weights layout it wants
//   (format_tag any) for a [kLayoutRows, K] source, copies w there (a reorder) and returns an
//   External that owns the packed copy; w is not referenced afterwards.
// matmulPacked(a, handle, out, m, accumulate, numThreads): one primitive per (M, N, K,
//   accumulate, threads), created on first use and cached per calling thread (creation costs
//   0.05-0.2 ms; the M-independence of the layout is what lets one packed copy serve every M).
//   accumulate is a sum post-op (dst = a·wᵀ + dst), i.e. beta = 1.
#include <napi.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "napi-args.h"
#include "onednn.h"

namespace kiln {
namespace {

// Rows of the source the weights layout is chosen for: the decode batch a worker lives in.
constexpr int64_t kLayoutRows = 32;
// Rows one primitive call takes at most; taller inputs run in chunks, which bounds the number
// of distinct M (and so of cached primitives) per shape.
constexpr int64_t kMaxChunkRows = 256;
// Cached primitives per thread before the cache is dropped and rebuilt on demand.
constexpr size_t kMaxCachedPlans = 2048;

void check(dnnl_status_t status, const char* what) {
  if (status != dnnl_success) throw std::runtime_error(statusMessage(what, status));
}

dnnl_engine_t engine() {
  static dnnl_engine_t e = [] {
    dnnl_engine_t created = nullptr;
    check(onednn().engineCreate(&created, dnnl_cpu, 0), "dnnl_engine_create");
    return created;
  }();
  return e;
}

// One in-order stream per calling thread (a stream is not meant to be shared between threads).
struct ThreadStream {
  dnnl_stream_t stream = nullptr;
  ~ThreadStream() {
    if (stream != nullptr) onednn().streamDestroy(stream);
  }
};

dnnl_stream_t threadStream() {
  thread_local ThreadStream ts;
  if (ts.stream == nullptr) {
    check(onednn().streamCreate(&ts.stream, engine(), dnnl_stream_default_flags),
          "dnnl_stream_create");
  }
  return ts.stream;
}

dnnl_memory_desc_t plainDesc(int64_t rows, int64_t cols, dnnl_format_tag_t tag) {
  dnnl_memory_desc_t md;
  dnnl_dims_t dims = {rows, cols};
  check(onednn().memoryDescInitByTag(&md, 2, dims, dnnl_f32, tag), "dnnl_memory_desc_init_by_tag");
  return md;
}

// Matmul primitive descriptor for src [m,k] · weights (weightsMd, logical [k,n]) → dst [m,n].
dnnl_primitive_desc_t matmulDesc(int64_t m, int64_t n, int64_t k,
                                 const dnnl_memory_desc_t& weightsMd, bool isAccumulate) {
  const Onednn& lib = onednn();
  dnnl_memory_desc_t src = plainDesc(m, k, dnnl_ab);
  dnnl_memory_desc_t dst = plainDesc(m, n, dnnl_ab);
  dnnl_matmul_desc_t desc;
  check(lib.matmulDescInit(&desc, &src, &weightsMd, nullptr, &dst), "dnnl_matmul_desc_init");
  dnnl_primitive_attr_t attr = nullptr;
  dnnl_post_ops_t postOps = nullptr;
  check(lib.primitiveAttrCreate(&attr), "dnnl_primitive_attr_create");
  if (isAccumulate) {
    check(lib.postOpsCreate(&postOps), "dnnl_post_ops_create");
    check(lib.postOpsAppendSum(postOps, 1.0f), "dnnl_post_ops_append_sum");
    check(lib.primitiveAttrSetPostOps(attr, postOps), "dnnl_primitive_attr_set_post_ops");
  }
  dnnl_primitive_desc_t pd = nullptr;
  dnnl_status_t status = lib.primitiveDescCreate(&pd, &desc, attr, engine(), nullptr);
  if (postOps != nullptr) lib.postOpsDestroy(postOps);
  lib.primitiveAttrDestroy(attr);
  check(status, "dnnl_primitive_desc_create (matmul)");
  return pd;
}

std::string implName(dnnl_primitive_desc_t pd) {
  const char* name = nullptr;
  onednn().primitiveDescQuery(pd, dnnl_query_impl_info_str, 0, &name);
  return name == nullptr ? "unknown" : name;
}

// Weights in the primitive's layout, owned by a JavaScript handle.
struct PackedWeights {
  int64_t n = 0;
  int64_t k = 0;
  dnnl_memory_desc_t md{};
  dnnl_memory_t memory = nullptr;  // owns its buffer (DNNL_MEMORY_ALLOCATE); null when empty
  size_t bytes = 0;
  std::string impl;  // implementation the layout was chosen for, e.g. "brg:avx512_core"
  ~PackedWeights() {
    if (memory != nullptr) onednn().memoryDestroy(memory);
  }
};

// A primitive for one shape, with the src/dst memory objects whose handles each call sets.
struct Plan {
  dnnl_memory_desc_t weightsMd{};
  dnnl_primitive_t primitive = nullptr;
  dnnl_memory_t src = nullptr;
  dnnl_memory_t dst = nullptr;
  ~Plan() {
    const Onednn& lib = onednn();
    if (src != nullptr) lib.memoryDestroy(src);
    if (dst != nullptr) lib.memoryDestroy(dst);
    if (primitive != nullptr) lib.primitiveDestroy(primitive);
  }
};

using PlanKey = std::tuple<int64_t, int64_t, int64_t, bool, int>;  // m, n, k, accumulate, threads

std::unique_ptr<Plan> createPlan(int64_t m, const PackedWeights& w, bool isAccumulate) {
  const Onednn& lib = onednn();
  auto plan = std::make_unique<Plan>();
  plan->weightsMd = w.md;
  dnnl_primitive_desc_t pd = matmulDesc(m, w.n, w.k, w.md, isAccumulate);
  dnnl_status_t status = lib.primitiveCreate(&plan->primitive, pd);
  lib.primitiveDescDestroy(pd);
  check(status, "dnnl_primitive_create (matmul)");
  dnnl_memory_desc_t src = plainDesc(m, w.k, dnnl_ab);
  dnnl_memory_desc_t dst = plainDesc(m, w.n, dnnl_ab);
  check(lib.memoryCreate(&plan->src, &src, engine(), DNNL_MEMORY_NONE), "dnnl_memory_create");
  check(lib.memoryCreate(&plan->dst, &dst, engine(), DNNL_MEMORY_NONE), "dnnl_memory_create");
  return plan;
}

// The calling thread's plan for this shape, created on first use.
Plan& threadPlan(int64_t m, const PackedWeights& w, bool isAccumulate) {
  thread_local std::map<PlanKey, std::unique_ptr<Plan>> plans;
  PlanKey key{m, w.n, w.k, isAccumulate, onednn().ompGetMaxThreads()};
  auto it = plans.find(key);
  if (it != plans.end() && onednn().memoryDescEqual(&it->second->weightsMd, &w.md)) {
    return *it->second;
  }
  if (plans.size() >= kMaxCachedPlans) plans.clear();
  std::unique_ptr<Plan>& slot = plans[key];
  slot = createPlan(m, w, isAccumulate);
  return *slot;
}

std::unique_ptr<PackedWeights> pack(const float* w, int64_t n, int64_t k) {
  const Onednn& lib = onednn();
  auto packed = std::make_unique<PackedWeights>();
  packed->n = n;
  packed->k = k;
  if (n == 0 || k == 0) return packed;
  dnnl_memory_desc_t any = plainDesc(k, n, dnnl_format_tag_any);
  dnnl_primitive_desc_t layoutPd = matmulDesc(kLayoutRows, n, k, any, false);
  packed->md = *lib.primitiveDescQueryMd(layoutPd, dnnl_query_weights_md, 0);
  packed->impl = implName(layoutPd);
  lib.primitiveDescDestroy(layoutPd);
  packed->bytes = lib.memoryDescGetSize(&packed->md);
  check(lib.memoryCreate(&packed->memory, &packed->md, engine(), DNNL_MEMORY_ALLOCATE),
        "dnnl_memory_create (packed weights)");
  // w [N,K] row-major is the logical [K,N] matrix in the transposed ("ba") layout.
  dnnl_memory_desc_t plain = plainDesc(k, n, dnnl_ba);
  dnnl_memory_t source = nullptr;
  check(lib.memoryCreate(&source, &plain, engine(), const_cast<float*>(w)), "dnnl_memory_create");
  dnnl_primitive_desc_t reorderPd = nullptr;
  dnnl_primitive_t reorder = nullptr;
  dnnl_status_t status = lib.reorderPrimitiveDescCreate(&reorderPd, &plain, engine(), &packed->md,
                                                        engine(), nullptr);
  if (status == dnnl_success) status = lib.primitiveCreate(&reorder, reorderPd);
  if (status == dnnl_success) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, source}, {DNNL_ARG_TO, packed->memory}};
    status = lib.primitiveExecute(reorder, threadStream(), 2, args);
  }
  if (status == dnnl_success) status = lib.streamWait(threadStream());
  if (reorder != nullptr) lib.primitiveDestroy(reorder);
  if (reorderPd != nullptr) lib.primitiveDescDestroy(reorderPd);
  lib.memoryDestroy(source);
  check(status, "reorder into the packed layout");
  return packed;
}

void runPacked(const float* a, const PackedWeights& w, float* out, int64_t m, bool isAccumulate) {
  const Onednn& lib = onednn();
  dnnl_stream_t stream = threadStream();
  for (int64_t row = 0; row < m; row += kMaxChunkRows) {
    int64_t rows = std::min(kMaxChunkRows, m - row);
    Plan& plan = threadPlan(rows, w, isAccumulate);
    check(lib.memorySetDataHandle(plan.src, const_cast<float*>(a + row * w.k)),
          "dnnl_memory_set_data_handle");
    check(lib.memorySetDataHandle(plan.dst, out + row * w.n), "dnnl_memory_set_data_handle");
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, plan.src}, {DNNL_ARG_WEIGHTS, w.memory}, {DNNL_ARG_DST, plan.dst}};
    check(lib.primitiveExecute(plan.primitive, stream, 3, args), "dnnl_primitive_execute");
  }
  check(lib.streamWait(stream), "dnnl_stream_wait");
}

const PackedWeights& packedArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsExternal()) throw Napi::TypeError::New(info.Env(), "packed must be a packWeights handle");
  return *v.As<Napi::External<PackedWeights>>().Data();
}

// packWeights(w, n, k, numThreads) → External handle; w is [N, K] row-major.
Napi::Value PackWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, "packWeights takes 4 arguments");
  Napi::Float32Array w = float32Arg(info, 0, "w");
  int64_t n = dimArg(info, 1, "n");
  int64_t k = dimArg(info, 2, "k");
  int64_t numThreads = dimArg(info, 3, "numThreads");
  requireLen(env, w, n * k, "w");
  setNumThreads(static_cast<int>(numThreads));
  std::unique_ptr<PackedWeights> packed;
  try {
    packed = pack(w.Data(), n, k);
  } catch (const std::exception& err) {
    throw Napi::Error::New(env, err.what());
  }
  int64_t bytes = static_cast<int64_t>(packed->bytes);
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return Napi::External<PackedWeights>::New(env, packed.release(),
                                            [bytes](Napi::Env e, PackedWeights* p) {
                                              Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
                                              delete p;
                                            });
}

// matmulPacked(a, packed, out, m, accumulate, numThreads): out[M,N] = a[M,K]·wᵀ (+ out).
Napi::Value MatmulPacked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6) throw Napi::TypeError::New(env, "matmulPacked takes 6 arguments");
  Napi::Float32Array a = float32Arg(info, 0, "a");
  const PackedWeights& w = packedArg(info, 1);
  Napi::Float32Array out = float32Arg(info, 2, "out");
  int64_t m = dimArg(info, 3, "m");
  bool isAccumulate = info[4].ToBoolean().Value();
  int64_t numThreads = dimArg(info, 5, "numThreads");
  requireLen(env, a, m * w.k, "a");
  requireLen(env, out, m * w.n, "out");
  if (m == 0 || w.n == 0) return env.Undefined();
  if (w.k == 0) {
    if (!isAccumulate) std::memset(out.Data(), 0, sizeof(float) * m * w.n);
    return env.Undefined();
  }
  setNumThreads(static_cast<int>(numThreads));
  try {
    runPacked(a.Data(), w, out.Data(), m, isAccumulate);
  } catch (const std::exception& err) {
    throw Napi::Error::New(env, err.what());
  }
  return env.Undefined();
}

// packedInfo(packed) → { n, k, bytes, impl } for logs and tests.
Napi::Value PackedInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const PackedWeights& w = packedArg(info, 0);
  Napi::Object o = Napi::Object::New(env);
  o.Set("n", static_cast<double>(w.n));
  o.Set("k", static_cast<double>(w.k));
  o.Set("bytes", static_cast<double>(w.bytes));
  o.Set("impl", w.impl.empty() ? "empty" : w.impl);
  return o;
}

}  // namespace

void registerPackedMatmul(Napi::Env env, Napi::Object exports) {
  exports.Set("packWeights", Napi::Function::New(env, PackWeights, "packWeights"));
  exports.Set("matmulPacked", Napi::Function::New(env, MatmulPacked, "matmulPacked"));
  exports.Set("packedInfo", Napi::Function::New(env, PackedInfo, "packedInfo"));
}

}  // namespace kiln
