#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one short run (a lent GPU's minutes are few):
# - the CUDA cases of the tests: masks exact under bf16 autocast and under torch.compile
#   (inductor), compiled training matching eager, no graph compiled after the dense level;
# - scripts/bench.py's gpu section: masked vs plain bf16 throughput (MLP; HF Trainer with
#   GPT-2 small, eager and compiled) and the graphs compiled across 3 IMP levels.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]
#   PYTHON (default python3) must have multiticket's nlp dependencies; OUT_DIR gets the logs
#   and bench_gpu.json. On a machine without CUDA both parts report themselves skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: none"
"$py" -c "import torch, transformers; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
      '| transformers', transformers.__version__)"
"$py" -m pytest -q -p no:cacheprovider -k cuda tests/adapters/hf/test_hf_compile.py \
  tests/adapters/hf/test_hf_training.py 2>&1 | tee "$out/tests.log"
"$py" scripts/bench.py --skip masking,rl,nlp,bookkeeping,local,ray --out "$out/bench_gpu.json" 2>&1 \
  | tee "$out/bench.log"
