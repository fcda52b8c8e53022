#!/usr/bin/env bash
# Set up (if needed) and run the default task: a real ticket search on CartPole with A2C over 5 seeds,
# then write its report. Extra arguments go to 'multiticket run'.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
task="${MULTITICKET_DEMO_TASK:-cartpole-a2c}"
run_dir=$(.venv/bin/multiticket run "$task" --out runs "$@" | tail -n 1)
.venv/bin/multiticket report "$run_dir"
