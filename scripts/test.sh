#!/usr/bin/env bash
# Set up (if needed), check the code (ruff, mypy, the import layers) and run the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check multiticket tests scripts
.venv/bin/mypy multiticket
.venv/bin/lint-imports
# the whole suite, the slow end-to-end cases marked `expensive` too (a bare `pytest` leaves them out)
.venv/bin/python -m pytest -q -m "expensive or not expensive" "$@"
