#!/usr/bin/env bash
# Runs the conformance suite on every built-in backend under N different seeds in a row
# (default 20) and counts failing runs: the suite must stay green whatever the seed.
#
# The statistical checks (the init statistics and the init independence tests) can fail a
# correct backend by chance, each at most at its stated false-alarm rate. Before the sweep,
# the script counts them in one run and prints how many chance failures the sweep expects:
# N runs x (statistical tests per run) x (their rate). Every other check is deterministic for
# a seed and should never fail a correct backend.
# Usage: tools/seed_sweep.sh [N] [extra pytest args, e.g. -n 2 --dist loadgroup]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
shift || true
.venv/bin/python - "$runs" <<'PY'
import subprocess
import sys

from suites import test_init_independence, test_init_statistics

RATES = {
    "test_init_conv_weights": test_init_statistics.FAMILY_ALPHA,
    "test_init_linear_weights": test_init_statistics.FAMILY_ALPHA,
    "test_init_layers_independent": test_init_independence.ALPHA,
    "test_init_seeds_independent": test_init_independence.ALPHA,
    "test_init_values_not_shared": test_init_independence.ALPHA,  # an upper bound: its tail is far below
}
command = [sys.executable, "-m", "pytest", "suites", "--ignore=suites/bench_net.py", "--backend=all"]
command += ["--collect-only", "-q", "-p", "no:cacheprovider"]
ids = subprocess.run(command, capture_output=True, text=True).stdout.split()
tests = [i.split("::")[-1].split("[")[0] for i in ids if "::" in i]
statistical = [t for t in tests if t in RATES]
per_run = sum(RATES[t] for t in statistical)
runs = int(sys.argv[1])
chance = 1 - (1 - per_run) ** runs
print(
    f"{len(statistical)} statistical tests per run, each false-alarming at most at its rate"
    f" ({', '.join(sorted({f'{r:g}' for r in RATES.values()}))}): {runs} runs expect at most"
    f" {runs * per_run:.2g} chance failures (P(any) <= {chance:.2%})"
)
PY
mkdir -p .netharness
failed=0
for seed in $(seq 1 "$runs"); do
  start=$SECONDS
  if .venv/bin/python -m pytest suites --ignore=suites/bench_net.py --backend=all --strict-backends \
      --seed="$seed" -q -p no:cacheprovider --conformance-results=".netharness/seed-$seed.jsonl" "$@" > ".netharness/seed-$seed.log" 2>&1; then
    echo "seed $seed: passed ($((SECONDS - start)) s) $(tail -1 ".netharness/seed-$seed.log")"
  else
    failed=$((failed + 1))
    echo "seed $seed: FAILED ($((SECONDS - start)) s), see .netharness/seed-$seed.log"
  fi
done
echo "$failed of $runs seeded runs failed"
exit $((failed > 0))
