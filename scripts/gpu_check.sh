#!/usr/bin/env bash
# On a machine with a CUDA GPU (after `bash scripts/install.sh`), one command that proves the paper path on the real
# device and measures it, in under 8 minutes on one GPU:
#   1. the paper-shape dry run of every notebook on the GPU (random weights, fake paper-shaped data, 2 steps per
#      run, network blocked; `python3 -m vpkit replicate NAME --profile paper --dry-run --real-device`),
#   2. training-step throughput at paper shapes (scripts/throughput.py: VPT-deep, full fine-tuning, Pro-Tuning,
#      CoCoOp, CLIP feature encoding; bf16 autocast; images/s and peak memory),
# and writes one report: results/benchmarks/gpu_check.json (+ .md), or the path given as $1.
#   usage: bash scripts/gpu_check.sh [REPORT.json]
set -uo pipefail
cd "$(dirname "$0")/.."
REPORT=${1:-results/benchmarks/gpu_check.json}
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "gpu_check: no CUDA GPU visible to torch; run it on a machine with one (the CPU proof is the dry run: python3 -m vpkit replicate --profile paper --dry-run)" >&2
  exit 1; }
exec python3 scripts/gpu_check.py --report "$REPORT"
