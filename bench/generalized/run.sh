#!/bin/bash
# usage: bash .gpu_a/run.sh MINUTES
# Measurement script used once on the lent GPU machine (see docs/notes/generalized_models_a.md).
# .gpu_a/ (not in git) held the pure-Python deps (deps.tgz), wheels and the Lite weights / tire data
# carried to the device; rebuild it the same way before reusing this script.
set -u
mkdir -p /tmp/site && tar xzf .gpu_a/deps.tgz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu_a/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_CACHE=$PWD/.gpu_a/hf HF_HUB_OFFLINE=1 IADBE_HOME=/tmp/iadbe_home
python3 -c "import torch, timm, lightning; print(torch.__version__, timm.__version__, lightning.__version__, torch.cuda.is_available())"
M=$1
for spec in "reverse_distillation 200" "fastflow 500" "uflow 200" "cfa 30"; do
  set -- $spec
  python3 -W ignore .gpu_a/gpu_measure.py $1 $2 $M $OUT > $OUT/log_$1.txt 2>&1 &
done
wait
tail -n 3 $OUT/log_*.txt
cat $OUT/*.json
