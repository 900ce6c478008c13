#!/usr/bin/env bash
# The benchmarks on an NVIDIA GPU machine, in one command: the WebGPU benchmark in Node (Dawn on
# the NVIDIA Vulkan driver: our step, TF.js's and the CPU reference's, plus 64Mi elements), the
# probe of what bounds the step, and PyTorch's RMSprop (foreach, torch.compile, a device copy).
#
# The GPU machine needs no Node.js or registry (see ../shared/gpu/README.md). On the development
# machine, from the project root:
#   npm ci && npm run bench:build && bash ../shared/gpu/pack.sh
# then send the tree with .gpu/ and dist-bench/ (the device tool: carry [".gpu", "dist-bench"]) and run
#   bash bench/gpu.sh            # results in $OUT (the device tool's folder) or ./bench-results
# On a machine with a GPU and the project's node_modules, plain `npm run bench -- --large` also works.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench-results}
mkdir -p "$out"
if [ -f .gpu/setup.sh ]; then
  bash .gpu/setup.sh 2>&1 | tee "$out/setup.txt"
  . /tmp/gpu/env.sh
fi
command -v node >/dev/null || { echo "no node: run ../shared/gpu/pack.sh on the development machine and send .gpu/" >&2; exit 1; }
[ -f dist-bench/bench.js ] || { echo "dist-bench/bench.js is missing: run 'npm run bench:build' and send dist-bench/" >&2; exit 1; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv | tee "$out/nvidia-smi.txt"
status=0
echo "== WebGPU (Node, Dawn) =="
node dist-bench/bench.js --node-only --large --json "$out/webgpu.json" 2>&1 | tee "$out/webgpu.txt" || status=1
echo "== probe: what bounds the step =="
node dist-bench/probe.js 2>&1 | tee "$out/probe.txt" || status=1
echo "== PyTorch =="
if python3 -c 'import torch' 2>/dev/null; then
  python3 bench/torch_rmsprop.py --json "$out/torch.json" 2>&1 | tee "$out/torch.txt" || status=1
else
  echo "python3 has no torch: skipped" | tee "$out/torch.txt"
fi
echo "results in $out/"
exit $status
