#!/usr/bin/env bash
# The GPU server's figures in one run: policy latency, classifier throughput, learner updates/s,
# then the CUDA-sensitive unit tests. Each part writes its JSON and log into OUT_DIR and a failing
# part does not stop the others.
#
# usage: scripts/device_bench.sh OUT_DIR
#   (run from the repository root, with a CUDA GPU and the project's Python dependencies importable;
#    figures go into docs/benchmarks.md, "GPU server")
set -u
out=${1:?usage: scripts/device_bench.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
py=${PYTHON:-python3}
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
  # No EGL here: nothing below renders, but importing mujoco with MUJOCO_GL=egl would load it.
  export MUJOCO_GL=disable
  echo "no libEGL: MUJOCO_GL=disable (these benches do not render)"
fi

part() {  # part NAME SECONDS COMMAND...: run COMMAND under a time limit, JSON to NAME.json
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date -u +%H:%M:%S))"
  timeout "$limit" "$@" >"$out/$name.json" 2>"$out/$name.log"
  echo "   rc=$? $(tail -c 300 "$out/$name.json")"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

part policy 120 "$py" -m robofume.cli bench policy --device cuda --batch-sizes 1 4 16 64 --json
part policy_cpu 120 "$py" -m robofume.cli bench policy --device cpu --batch-sizes 1 4 16 --json
part learner 240 "$py" -m robofume.cli bench learner --device cuda --steps 100 --json
part classifier 240 "$py" -m robofume.cli bench classifier --latency-only --device cuda \
  --batch-sizes 1 16 64 --out "$out/classifier_out" --json

echo "== CUDA unit tests ($(date -u +%H:%M:%S))"
timeout 240 "$py" -m pytest -q -x -p no:cacheprovider \
  tests/policy_server/test_policy_core.py tests/policy_server/test_networks.py \
  tests/policy_server/test_calql.py tests/policy_server/test_feature_cache.py \
  tests/reward_vlm/test_backbones.py tests/reward_vlm/test_classifier.py >"$out/tests.log" 2>&1
echo "   rc=$? $(tail -n 3 "$out/tests.log")"
