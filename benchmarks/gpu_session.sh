#!/usr/bin/env bash
# The GPU checks the open issues ask for, in stages that each fit one 10-minute device call.
#
#   speed     issue 8: graphs, breaks and CUDA-graph skips of the compiled step (crop-flip),
#             throughput (a) / (b) / (c) / (d: trials stacked in one process), memory  (~8 min)
#   accuracy  issue 8: dense ResNet-20, 30 epochs, 2 seeds, fast engine vs fp32; issue 3:
#             pruning time on the GPU                                                (~7 min)
#   packing   issue 6: 4 trials on one GPU under Ray Tune vs one at a time; the compiled
#             step with rrc-flip (Tiny-ImageNet's crop, through roi_align)           (~7 min)
#
# On the device machine, from the repo root, after the line ../shared/tools/gpu-bundle.sh
# printed (which puts Ray, OmegaConf and the CIFAR-10 JPEGs in .gpu):
#   bash benchmarks/gpu_session.sh speed
# Each stage writes its JSON and logs under $OUT (or ./gpu-out) and ends with a short summary.
set -uo pipefail
stage=${1:?usage: gpu_session.sh speed|accuracy|packing}
out=${OUT:-gpu-out}
mkdir -p "$out"
data=${PAI_BENCH_CIFAR10_JPEG:-/tmp/cifar10-jpeg}
if [ ! -d "$data/train" ]; then
  mkdir -p "$data" && tar xzf .gpu/cifar10-jpeg.tar.gz -C "$data" || { echo "no CIFAR-10 JPEGs: run gpu-bundle.sh here first"; exit 2; }
fi
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
cifar=(data.name=imagefolder "data.root=$data")
status=0
step() {  # step NAME COMMAND...: run, log to $out/NAME.log, remember a failure, go on
  local name=$1; shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "== $name failed (exit $rc)"; status=1; }
}

case "$stage" in
speed)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" 2>&1
  step cli python3 -m pai_bench list methods
  step compile_check python3 benchmarks/compile_check.py --device cuda --augments crop-flip --out "$out/compile_check.json"
  step throughput python3 benchmarks/throughput.py --data imagefolder --root "$data" --out "$out/throughput.json"
  ;;
accuracy)
  step engine_accuracy python3 benchmarks/engine_accuracy.py --out-dir /tmp/runs/engine --out "$out/engine_accuracy.json" \
    --set "${cifar[@]}"
  step prune_speed python3 benchmarks/prune_speed.py --device cuda --methods px synflow snip grasp --repeats 2 --out "$out/prune_speed.json" \
    --profile "$out/px_profile.txt"
  ;;
packing)
  step packing python3 benchmarks/packing.py --out-dir /tmp/runs/packing --out "$out/packing.json" --set "${cifar[@]}"
  step compile_check_rrc python3 benchmarks/compile_check.py --device cuda --augments rrc-flip --out "$out/compile_check_rrc.json"
  ;;
*)
  echo "unknown stage '$stage': valid stages are speed, accuracy, packing"; exit 2
  ;;
esac
exit $status
