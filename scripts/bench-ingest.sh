#!/usr/bin/env bash
# Ingest load, side by side: ackbar vs Prometheus Alertmanager vs a bare Rust
# receiver ("ceiling-typed"), with the shared load harness. Run it from the
# root of the checkout; it builds ackbar in release mode.
#
#   scripts/bench-ingest.sh                  # both modes, 3 rounds, sizes 1 10 100 (~20 min)
#   RUNS=1 DURATION=5 scripts/bench-ingest.sh  # a quick look (numbers too noisy to quote)
#   MODE=unique scripts/bench-ingest.sh      # one mode
#
# Every setting of the harness passes through (see its README: MODE, RUNS,
# DURATION, SIZES, ...). BENCH_DIR names the harness (default ../shared/bench).
# It needs wrk and prometheus-alertmanager (apt-get install -y wrk
# prometheus-alertmanager); the report lands in target/bench-results/<time>/.
set -euo pipefail

cd "$(dirname "$0")/.."
bench_dir=${BENCH_DIR:-../shared/bench}
if [[ ! -x $bench_dir/run.sh ]]; then
    echo "no load harness at $bench_dir (set BENCH_DIR to the folder holding run.sh)" >&2
    exit 2
fi
export MODE=${MODE:-repeat unique}
exec "$bench_dir/run.sh" ackbar alertmanager ceiling-typed "$@"
