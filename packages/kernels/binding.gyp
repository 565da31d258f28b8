{
  # One small addon: native/gemm.cc over Debian's oneDNN, opened at run time with dlopen (the
  # header comes from libdnnl-dev, the library from libdnnl2). See docs/adr/0002-cpu-gemm.md.
  "targets": [
    {
      "target_name": "kiln_gemm",
      "sources": ["native/gemm.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-O2", "-std=c++17"],
      "libraries": ["-ldl"]
    }
  ]
}
