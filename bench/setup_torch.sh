#!/usr/bin/env bash
# The benchmark venv: PyPI's PyTorch 2.x with transformers and PEFT, and the newest onnxruntime:
# the peers bench/ compares against (bench_runtime.py, bench_train.py, bench_lm_rfa.py). Kept out of the test requirements: it
# is a multi-GB download (CUDA wheels; about 6 minutes and 5.8 GB). Idempotent.
#   bench/setup_torch.sh            # into .bench-venv (or $ULC_BENCH_VENV)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${ULC_BENCH_VENV:-$root/.bench-venv}
py=/usr/bin/python3 # Debian's python3 (the pyenv one first on PATH is not the system's)
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import torch, transformers, peft, safetensors, numpy, psutil, onnxruntime, onnx" 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/bench/requirements-torch.txt"
fi
"$venv/bin/python" -c "import torch, transformers, peft, onnxruntime; print('bench venv:', '$venv', 'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'onnxruntime', onnxruntime.__version__)"
