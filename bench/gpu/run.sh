#!/usr/bin/env bash
# The prepared WebGPU run for a machine with an NVIDIA GPU (issue #14, ADR 0019). Not run yet:
# no GPU machine was available when it was written. Needs the Vulkan loader (libvulkan1) and
# the NVIDIA driver's Vulkan ICD (nvidia_icd.json); see docs/gpu-machines.md.
#   bench/gpu/run.sh [outDir]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-bench/gpu/out}"
mkdir -p "$OUT" bench/models
export KILN_WEBGPU_BACKEND="${KILN_WEBGPU_BACKEND:-vulkan}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"
vulkaninfo --summary 2>/dev/null | tee "$OUT/vulkaninfo.txt" || echo "vulkaninfo missing (optional)"

# 1. Golden parity on NVIDIA Vulkan at the core feature level: the shared backend suite.
(cd packages/kernels && KILN_WEBGPU_TESTS=1 CI=true npx vitest run tests/backend-suite.webgpu.test.ts) \
  2>&1 | tee "$OUT/parity.txt"

# 2. Decode tok/s at batch 1, 16 and 64 on llama-110m and the random llama-1b-gqa.
for shape in llama-110m llama-1b-gqa; do
  [ -d "bench/models/$shape" ] || npm run -s make-model -- "$shape" "bench/models/$shape"
  npx tsx bench/gpu/webgpu-decode.ts "bench/models/$shape" --batches 1,16,64 | tee -a "$OUT/decode.jsonl"
done

# 3. llama.cpp on the same GPU (CUDA build of node-llama-cpp) on the same weights. The exporter
# here writes F32 GGUF (the F16 exporter is issue #20a's); node-llama-cpp is not a dependency of
# this repository: install it on the GPU machine only.
for shape in llama-110m llama-1b-gqa; do
  npx tsx bench/src/gguf/cli.ts "bench/models/$shape" "bench/models/$shape.gguf" | tee -a "$OUT/llamacpp.txt"
done
echo "llama.cpp: npx --yes node-llama-cpp source download --gpu cuda, then time decode of each .gguf at batch 1/16/64" \
  | tee -a "$OUT/llamacpp.txt"
echo "results in $OUT; compare batch-1 decode with the HBM bound (bytes of weights / bandwidth)"
