#!/usr/bin/env bash
# The GPU check: everything that CI (no GPU) cannot run, in one script. Each step has a limit
# below, 9 minutes together, sized from runs on one H100 (docs/guarantees.md and
# docs/performance.md say what they measured).
#
#   tools/gpu_check.sh [OUT]        (default OUT: gpu-check; run from anywhere, after `make test` made .venv)
#   NETHARNESS_PYTHON=python3 tools/gpu_check.sh [OUT]
#                                   (a GPU machine whose python3 has the dependencies, after
#                                    `python3 -m pip install --no-deps --no-build-isolation -e .`)
#
# Steps, each with its own time limit, all run even if one fails:
#   1. strict conformance on cuda of every backend that runs there, 4 pytest-xdist workers if
#      pytest-xdist is installed (it also fills the compile caches the main job then reads);
#   2. the quick main job on cuda, strict, on the backends that run there (report in OUT/run);
#   3. netharness fidelity on cuda: the harness's median against torch.utils.benchmark's;
#   4. the train-step comparison: every backend against a plain nn.Module + SGD step, interleaved
#      (tools/bench_backends.py), whose "eager train step / plain torch step" lines must read <= 1.10x.
# It prints the card, each step's outcome and time, and exits 1 if any step failed. On a
# machine without CUDA it stops at once with exit 2 and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
py=${NETHARNESS_PYTHON:-.venv/bin/python}
if ! command -v "$py" >/dev/null; then
  echo "gpu_check: no Python at $py; run 'make test' (or 'make venv') first, or set NETHARNESS_PYTHON" >&2
  exit 2
fi
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: torch sees no CUDA device (torch.cuda.is_available() is False); run this on a GPU machine" >&2
  exit 2
fi
mkdir -p "$out"
# JAX reserves 75% of the GPU's memory in each process that starts it; the workers below and
# torch share one GPU (backends/jax_backend.py says the same to users).
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
"$py" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"gpu_check: {p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, torch {torch.__version__}")'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu_check: nvidia-smi: /'

cuda_backends=$("$py" - <<'EOF'
from harness import load_backends
registry = load_backends()
print(",".join(n for n, b in registry.backends.items() if "cuda" in b.devices and b.availability().available))
EOF
)
echo "gpu_check: backends that run on cuda here: $cuda_backends"
workers=()
if "$py" -c 'import xdist' 2>/dev/null; then
  workers=(-n 4 --dist loadgroup)
fi

failed=()
step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "gpu_check: [$name] $*"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local code=$?
  tail -n 25 "$out/$name.log"
  if [ "$code" -eq 0 ]; then
    echo "gpu_check: [$name] passed in $((SECONDS - start)) s"
  else
    [ "$code" -eq 124 ] && echo "gpu_check: [$name] ran past its ${limit} s limit"
    echo "gpu_check: [$name] FAILED (exit $code) in $((SECONDS - start)) s; full log: $out/$name.log"
    failed+=("$name")
  fi
}

total=$SECONDS
step conformance 160 "$py" -m pytest suites --backend="$cuda_backends" --device=cuda --strict-backends \
  --ignore=suites/bench_net.py -q -p no:cacheprovider "${workers[@]}" --durations=10 --conformance-results="$out/conformance.jsonl"
step main-job 290 "$py" -m harness.commands.cli run --quick --device=cuda --strict-backends --backend="$cuda_backends" \
  --out "$out/run"
step fidelity 50 "$py" -m harness.commands.cli fidelity --device=cuda --trials=2 --seconds=0.5
step train-step 45 "$py" tools/bench_backends.py --device=cuda --backends="$cuda_backends" --rounds=8 --repeats=5
if ! grep -q "eager train step / plain torch step" "$out/train-step.log" \
  || grep "eager train step / plain torch step" "$out/train-step.log" | grep -q MISSES; then
  echo "gpu_check: [train-step] eager's CUDA train step is not within 1.10x of a plain nn.Module + SGD step"
  failed+=("train-step-bar")
fi
echo "gpu_check: done in $((SECONDS - total)) s; logs and the report in $out/"
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_check: FAILED: ${failed[*]}"
  exit 1
fi
echo "gpu_check: every step passed"
