{
  # Two addons. kiln_gemm: one small addon over Debian's oneDNN, opened at run time with dlopen
  # (the header comes from libdnnl-dev, the library from libdnnl2): dnnl_sgemm, the packed matmul
  # primitive and native paged attention (docs/adr/0002-cpu-gemm.md); built only where the header
  # is present. kiln_tier: the addon's own AVX-512/AVX2 GEMM, row kernels, paged attention and
  # sampling (elementwise.cc, sampling.cc, attention.cc on tier-pool.h's threads: KILN_TIER_POOL) with no library at all, built
  # wherever a compiler is and shipped prebuilt (docs/adr/0022-kernel-tiers.md). No -march: both
  # pick their vector width at load time, so the build runs on any x86-64.
  "variables": {
    "with_onednn%": "<!(node -p \"require('fs').existsSync('/usr/include/oneapi/dnnl/dnnl.h') ? 1 : 0\")"
  },
  "targets": [
    {
      "target_name": "kiln_tier",
      "sources": ["native/tier-gemm.cc", "native/elementwise.cc", "native/attention.cc",
                  "native/sampling.cc"],
      "defines": ["KILN_TIER_POOL"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-O3", "-std=c++17", "-ffp-contract=fast", "-Wno-psabi", "-pthread"],
      "libraries": ["-pthread"]
    }
  ],
  "conditions": [
    ["with_onednn==1", {
      "targets": [
        {
          "target_name": "kiln_gemm",
          "sources": [
            "native/gemm.cc",
            "native/onednn.cc",
            "native/packed-matmul.cc",
            "native/attention.cc",
            "native/elementwise.cc",
            "native/lora.cc",
            "native/sampling.cc",
            "native/quant-matmul.cc",
            "native/shm-collective.cc",
            "native/tcp-collective.cc",
            "native/huge-pages.cc"
          ],
          "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
          "cflags_cc": ["-O3", "-std=c++17", "-ffp-contract=fast", "-Wno-psabi"],
          "libraries": ["-ldl", "-lrt"]
        }
      ]
    }]
  ]
}
