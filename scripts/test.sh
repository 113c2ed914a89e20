#!/usr/bin/env bash
# The one test command (README "Test"): installs what the tests need that the Rust toolchain
# does not bring, then runs every test in the workspace. .ci/run calls exactly this.
#
# Installs (each step is skipped when already done):
# - kafka-python and confluent-kafka from PyPI, for the cross-client smoke test;
# - iproute2 (Debian), for the network-partition test's namespaces (it needs root);
# - curl (Debian), which scripts/dev-cluster.sh polls /readyz with;
# - the operator's test tools into $HOME/.cache/millrace-k8s: helm, kubectl, kubernetes-validate,
#   etcd, the Kubernetes v1.36 CRD server and the v1.20 control plane, built from Debian packages
#   by ../shared/k8s-testenv (about 20 minutes the first time on 2 cores, seconds after);
# - buildah (Debian), with which scripts/build-images.sh builds and checks the two images from the
#   debug binaries the tests built (a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS

if ! python3 -c 'import kafka, confluent_kafka' 2>/dev/null; then
    echo "test.sh: installing kafka-python and confluent-kafka from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check kafka-python confluent-kafka
fi

missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]} from Debian"
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -d ../shared/k8s-testenv ] || [ -n "${MILLRACE_K8S_TESTENV:-}" ]; then
    operator/tests/setup-k8s-testenv.sh --with-control-plane-1.20
else
    echo "test.sh: ../shared/k8s-testenv not found; the Kubernetes server tests will report SKIPPED"
fi
echo "test.sh: set-up done in $((SECONDS - t0)) s"

# Every Rust test: unit, property, integration against real broker processes and real Kafka
# clients, and the operator's tests against real Kubernetes API servers.
cargo test --workspace --all-targets --no-fail-fast "$@"

# The Dockerfile's images, from the binaries just built: no pull, no second compile.
scripts/build-images.sh

# Offline checks of every rendered manifest: kubernetes-validate, helm lint, kustomize, CRs vs CRDs.
if [ -x "$HOME/.cache/millrace-k8s/bin/helm" ]; then
    operator/tests/manifests.sh
fi
echo "test.sh: all done in $((SECONDS - t0)) s"
