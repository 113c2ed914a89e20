#!/usr/bin/env bash
# Runs the throughput benchmark (broker/benches/throughput.rs) against a release build of the
# broker and keeps the JSON report. See bench/README.md.
#
#   bench/run.sh            full run: 2 M x 1 KiB and 10 M x 100 B records per produce run
#   bench/run.sh --smoke    a few thousand records, to check that the harness works (seconds)
#
# Any MILLRACE_BENCH_* variable set by the caller is passed through.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--smoke" ]]; then
    export MILLRACE_BENCH_RECORDS_1K="${MILLRACE_BENCH_RECORDS_1K:-20000}"
    export MILLRACE_BENCH_RECORDS_100B="${MILLRACE_BENCH_RECORDS_100B:-50000}"
    export MILLRACE_BENCH_LATENCY_SECS="${MILLRACE_BENCH_LATENCY_SECS:-1}"
fi

mkdir -p bench/results
export MILLRACE_BENCH_JSON="${MILLRACE_BENCH_JSON:-bench/results/throughput-$(date -u +%Y%m%dT%H%M%SZ).json}"
# `cargo bench` builds the bench and the millrace binary it starts with the release profile.
cargo bench -p millrace --bench throughput
