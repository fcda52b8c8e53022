#!/usr/bin/env bash
# Create .venv inside the clone and install multiticket with its extras.
# Keeps an already-installed torch (a CUDA build, say); installs the pinned CPU-friendly
# torch==2.13.0 only when torch is missing, and before anything that depends on torch.
# Usage: bash scripts/setup.sh [EXTRAS]    (default EXTRAS: all)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  if "$py" -c "import torch" >/dev/null 2>&1; then
    # reuse the interpreter's torch instead of downloading another one
    "$py" -m venv --system-site-packages .venv
  else
    "$py" -m venv .venv
  fi
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[${extras}]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import multiticket, torch; print('multiticket', multiticket.__version__, '| torch', torch.__version__)"
