#!/usr/bin/env bash
# Starts a local 3-node Millrace cluster on 127.0.0.1 for development: every node is a broker
# and a controller (a Raft voter), on its own ports and rack, with data under
# ./data/dev-cluster/node-N. Ctrl-C stops all three (SIGTERM: a clean shutdown).
#
#   scripts/dev-cluster.sh            # build (release) if needed, start, wait until ready
#   DEV_CLUSTER_BIN=path DEV_CLUSTER_DATA=dir scripts/dev-cluster.sh   (not MILLRACE_*: those are broker configs)
#
# Kafka clients: bootstrap.servers=127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292
# Admin ports (/metrics, /readyz): 127.0.0.1:9180, :9181, :9182
set -euo pipefail

cd "$(dirname "$0")/.."
BIN="${DEV_CLUSTER_BIN:-target/release/millrace}"
if [[ -z "${DEV_CLUSTER_BIN:-}" ]]; then
    cargo build --release --bin millrace
fi
DATA="${DEV_CLUSTER_DATA:-data/dev-cluster}"
VOTERS="1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293"
RACKS=(rack-a rack-b rack-c)
PIDS=()

stop() {
    trap - INT TERM EXIT
    echo "stopping the cluster"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait
    exit 0
}
trap stop INT TERM EXIT

for n in 1 2 3; do
    base=$((9092 + (n - 1) * 100))
    mkdir -p "$DATA/node-$n"
    "$BIN" serve \
        --override node.id=$n \
        --override controller.quorum.voters=$VOTERS \
        --override listeners=PLAINTEXT://127.0.0.1:$base \
        --override admin.listener=127.0.0.1:$((9179 + n)) \
        --override log.dirs="$DATA/node-$n" \
        --override broker.rack="${RACKS[$((n - 1))]}" \
        >"$DATA/node-$n.log" 2>&1 &
    PIDS+=($!)
done

for n in 1 2 3; do
    for _ in $(seq 1 300); do
        if curl -fs "http://127.0.0.1:$((9179 + n))/readyz" >/dev/null 2>&1; then
            break
        fi
        if ! kill -0 "${PIDS[$((n - 1))]}" 2>/dev/null; then
            echo "node $n exited; see $DATA/node-$n.log" >&2
            exit 1
        fi
        sleep 0.1
    done
done
echo "3-node cluster ready: bootstrap.servers=127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292"
echo "logs: $DATA/node-{1,2,3}.log   (Ctrl-C stops the cluster)"
wait
