#!/usr/bin/env bash
# Offline checks of every manifest the project ships or generates; no cluster needed.
#
#   operator/tests/manifests.sh            check (CI)
#   operator/tests/manifests.sh --update   regenerate deploy/base/operator.yaml from the chart
#
# 1. the model's objects for deploy/examples/ (`millrace-operator render`), crds/*.yaml,
#    `kubectl kustomize deploy/` and `helm template` over every values file in charts/millrace/ci/
#    are validated with `kubernetes-validate --strict` against the oldest and newest Kubernetes the
#    chart supports;
# 2. `helm lint --strict` with each values file;
# 3. every example custom resource (deploy/examples/, the chart's example Cluster) against its CRD
#    with crd_validate.py;
# 4. the chart's CRDs are byte-identical to crds/, and deploy/base/operator.yaml is what the chart
#    renders.
# Tools come from operator/tests/setup-k8s-testenv.sh (run it first; it is idempotent).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${MILLRACE_K8S_CACHE:-$HOME/.cache/millrace-k8s}
[ -f "$CACHE/env" ] || { echo "no $CACHE/env: run operator/tests/setup-k8s-testenv.sh first" >&2; exit 1; }
# shellcheck disable=SC1091
source "$CACHE/env"
cd "$ROOT"
KUBE_VERSIONS=${KUBE_VERSIONS:-"1.28.0 1.37.0"}
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
T0=$SECONDS
pass=0; fail=0
check() { # check NAME COMMAND...: run one check, count it, show its output only when it fails
  local what=$1; shift
  if "$@" > "$OUT/last.log" 2>&1; then
    pass=$((pass + 1)); echo "ok   $what"
  else
    fail=$((fail + 1)); echo "FAIL $what"; sed 's/^/     /' "$OUT/last.log"
  fi
}

operator_yaml() { # the chart rendered for deploy/base: release "millrace" in millrace-system
  helm template millrace charts/millrace --namespace millrace-system \
    | grep -v -e '^# Source:' -e 'helm.sh/chart:' \
    | sed 's#app.kubernetes.io/managed-by: Helm#app.kubernetes.io/managed-by: kustomize#'
}
if [ "${1:-}" = "--update" ]; then
  { echo "# Generated from charts/millrace by operator/tests/manifests.sh --update; do not edit."; operator_yaml; } \
    > deploy/base/operator.yaml
  echo "wrote deploy/base/operator.yaml"; exit 0
fi

validate() { # validate FILE: strict schema validation against each Kubernetes version
  local v
  for v in $KUBE_VERSIONS; do kubernetes-validate --strict --quiet -k "$v" "$1" || return 1; done
}

nice -n 15 cargo build -q -p millrace-operator
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/millrace-operator" render deploy/examples/*.yaml > "$OUT/model.yaml"
check "model objects for deploy/examples/ are valid Kubernetes objects" validate "$OUT/model.yaml"
"${CARGO_TARGET_DIR:-$ROOT/target}/debug/millrace-operator" render operator/src/fixtures/full-cluster.yaml > "$OUT/model-full.yaml"
check "model objects for the full-featured test Cluster (TLS, SCRAM, LoadBalancer) are valid" validate "$OUT/model-full.yaml"
for f in crds/cluster.yaml crds/topic.yaml crds/mirrormaker.yaml; do
  check "$f is a valid CustomResourceDefinition" validate "$f"
done

kubectl kustomize deploy/ > "$OUT/kustomize.yaml"
check "kubectl kustomize deploy/ output is valid" validate "$OUT/kustomize.yaml"
check "deploy/base/operator.yaml is what the chart renders (--update to regenerate)" \
  diff -u deploy/base/operator.yaml <({ echo "# Generated from charts/millrace by operator/tests/manifests.sh --update; do not edit."; operator_yaml; })

for values in charts/millrace/ci/*.yaml; do
  n=$(basename "$values" .yaml)
  check "helm lint --strict ($n)" helm lint --strict charts/millrace -f "$values"
  helm template millrace charts/millrace --namespace millrace-system -f "$values" > "$OUT/helm-$n.yaml"
  check "helm template ($n) output is valid" validate "$OUT/helm-$n.yaml"
done
check "helm template --include-crds output is valid" \
  bash -c "helm template millrace charts/millrace --include-crds > '$OUT/helm-crds.yaml' && $(declare -f validate); KUBE_VERSIONS='$KUBE_VERSIONS' validate '$OUT/helm-crds.yaml'"
for f in cluster.yaml topic.yaml mirrormaker.yaml; do
  check "charts/millrace/crds/$f is identical to crds/$f" cmp "crds/$f" "charts/millrace/crds/$f"
done

CRD_VALIDATE="python3-k8s $MILLRACE_K8S_TESTENV/crd_validate.py"
check "deploy/examples/cluster.yaml matches the Cluster CRD" $CRD_VALIDATE crds/cluster.yaml deploy/examples/cluster.yaml
check "the tests' full-featured Cluster matches the Cluster CRD" $CRD_VALIDATE crds/cluster.yaml operator/src/fixtures/full-cluster.yaml
check "deploy/examples/topics.yaml matches the Topic CRD" $CRD_VALIDATE crds/topic.yaml deploy/examples/topics.yaml
check "deploy/examples/mirrormaker.yaml matches the MirrorMaker CRD" $CRD_VALIDATE crds/mirrormaker.yaml deploy/examples/mirrormaker.yaml
check "the chart's example Cluster matches the Cluster CRD" $CRD_VALIDATE crds/cluster.yaml "$OUT/helm-full-values.yaml"
# The validator must also say no: a broken Cluster is refused.
sed 's/type: loadbalancer/type: ingress/' operator/src/fixtures/full-cluster.yaml > "$OUT/bad-cluster.yaml"
check "crd_validate.py refuses a bad enum (the check can fail)" bash -c "! $CRD_VALIDATE crds/cluster.yaml '$OUT/bad-cluster.yaml'"

echo "manifests: $pass passed, $fail failed in $((SECONDS - T0)) s"
[ "$fail" -eq 0 ]
