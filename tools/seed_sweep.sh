#!/usr/bin/env bash
# Runs the conformance suite on every built-in backend under N different seeds in a row
# (default 20) and counts failing runs: the suite must stay green whatever the seed.
# Usage: tools/seed_sweep.sh [N] [extra pytest args, e.g. -n 2]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
shift || true
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
