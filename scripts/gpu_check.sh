#!/usr/bin/env bash
# The GPU session's one prepared run (issue: "On the GPU"): set up the lent machine, then
# `polyvision benchmark gpu`, each step bounded in time, JSON per step under $OUT.
#   run from the repository root; wheels the machine lacks travel in .whl/ (device README);
#   extra arguments go to gpu_check.py (--only STEP ..., --dry-run).
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# The repository root is the `polyvision` package: make it importable without installing.
mkdir -p /tmp/pv && ln -sfn "$PWD" /tmp/pv/polyvision
export PYTHONPATH="/tmp/pv${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "${OUT:-gpu_check}/nvidia-smi.csv" 2>&1 || true
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec python3 -m polyvision.scripts.gpu_check --out "${OUT:-gpu_check}" "$@"
