#!/usr/bin/env bash
# Every GPU figure pai-bench still needs, in one call of at most about 9 minutes
# (benchmarks/gpu_check.py says what runs; benchmarks/README.md how to get a GPU run).
#
# On the lent GPU machine, from the repository root, with .gpu carried (made here by
# ../shared/tools/gpu-bundle.sh, see benchmarks/README.md):
#   bash benchmarks/gpu_check.sh                      # writes under $OUT (or ./gpu-out)
# The same steps on a CPU at tiny sizes, before spending GPU time:
#   bash benchmarks/gpu_check.sh --rehearse --out /tmp/gpu-check
# Other options go to gpu_check.py (--only STEP..., --total SECONDS).
set -uo pipefail
started=$(date +%s)   # the budget counts this set-up too
python=${PYTHON:-python3}
if [ -d .gpu/wheels ] && ! "$python" -c "import omegaconf, tqdm, statsmodels" 2>/dev/null; then
  # a GPU machine has no package access: what its Python lacks comes as wheels in .gpu
  mkdir -p /tmp/site
  "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/wheels/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$python" benchmarks/gpu_check.py --started-at "$started" "$@"   # --out: $OUT, else ./gpu-out
