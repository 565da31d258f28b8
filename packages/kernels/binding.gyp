{
  # One small addon over Debian's oneDNN, opened at run time with dlopen (the header comes from
  # libdnnl-dev, the library from libdnnl2): dnnl_sgemm, the packed matmul primitive and native
  # paged attention. See docs/adr/0002-cpu-gemm.md. No -march: attention.cc picks its vector
  # width at load time (target_clones), so the build runs on any x86-64.
  "targets": [
    {
      "target_name": "kiln_gemm",
      "sources": [
        "native/gemm.cc",
        "native/onednn.cc",
        "native/packed-matmul.cc",
        "native/attention.cc",
        "native/elementwise.cc",
        "native/shm-collective.cc",
        "native/tcp-collective.cc"
      ],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-O3", "-std=c++17", "-ffp-contract=fast", "-Wno-psabi"],
      "libraries": ["-ldl", "-lrt"]
    }
  ]
}
