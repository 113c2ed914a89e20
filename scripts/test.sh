#!/usr/bin/env bash
# The one test command (README "Test"): installs what the tests need that the Rust toolchain
# does not bring, then runs every test in the workspace. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python clients for the cross-client smoke test (kafka-python, confluent-kafka).
if ! python3 -c 'import kafka, confluent_kafka' 2>/dev/null; then
    echo "test.sh: installing kafka-python and confluent-kafka from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check kafka-python confluent-kafka
fi

# The broker binary the integration tests start is built by cargo itself (CARGO_BIN_EXE_millrace).
cargo test --workspace --all-targets --no-fail-fast "$@"
