// Large, long-lived buffers (packed weights, the KV pool) in transparent huge pages (ADR 0020,
// addendum "huge pages"). Single-stream decode streams every weight from DRAM each step; with
// 4 KiB pages each 4 KiB costs a TLB miss, and in a virtual machine a miss walks two page tables.
#pragma once

#include <napi.h>

#include <cstddef>

namespace kiln {

// A zero-filled ArrayBuffer of `bytes`: carved from 2 MiB-aligned mappings advised MADV_HUGEPAGE
// when huge pages are on (hugePages(true), the default) and `bytes` is at least kMinHugeBytes;
// V8's own allocation otherwise. Buffers share chunks; a chunk is freed with its last buffer.
Napi::ArrayBuffer newHugePageBuffer(Napi::Env env, size_t bytes);

void registerHugePages(Napi::Env env, Napi::Object exports);

}  // namespace kiln
