#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from the Go module proxy into a version-keyed cache folder,
# once per machine. Prints the folder holding the binaries on its last line.
# Recipe and reasons: ../shared/notes/control-plane.md (kept in sync with test/env/versions.json).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
versions="$here/versions.json"
K8S=$(node -p "require('$versions').kubernetes")
STAGING=$(node -p "require('$versions').staging")
ETCD=$(node -p "require('$versions').etcd")
GOV=$(go env GOVERSION)
ARCH="$(go env GOOS)-$(go env GOARCH)"
# The key covers everything that changes the output: versions, toolchain and this script.
hash=$(cat "$0" "$versions" | sha256sum | cut -c1-8)
root="${TALLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally}/k8sbins"
key="k8s-${K8S}_etcd-${ETCD}_${GOV}_${ARCH}_${hash}"
out="$root/$key"

# The outputs are captured, not piped into `grep -q`: grep exits at the first match, and under pipefail
# the SIGPIPE etcd then gets on writing its next lines failed the check now and then.
verify() {
  local apiserver etcd
  [ -x "$1/kube-apiserver" ] && [ -x "$1/etcd" ] && [ -x "$1/kubectl" ] &&
    apiserver=$("$1/kube-apiserver" --version 2>/dev/null) && [[ $apiserver == *"Kubernetes ${K8S}"* ]] &&
    etcd=$("$1/etcd" --version 2>/dev/null) && [[ $etcd == *"etcd Version: ${ETCD#v}"* ]]
}

if verify "$out"; then
  echo "$out"
  exit 0
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$root"
tmp=$(mktemp -d "$root/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/k8s" "$tmp/etcd"
start=$(date +%s)

echo "building etcd ${ETCD} (first run on this machine only)" >&2
(
  cd "$tmp/etcd"
  go mod init example.local/etcdbin >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@${ETCD}" >&2
  go build -p 2 -trimpath -ldflags "-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3 >&2
)

echo "building kube-apiserver and kubectl ${K8S} (first run on this machine only; about 20 minutes)" >&2
(
  cd "$tmp/k8s"
  printf 'module example.local/k8sbins\n\ngo 1.26\n' > go.mod
  # k8s.io/kubernetes pins its staging modules at v0.0.0 with local replaces, which only apply in
  # its own module: derive the list from its real go.mod and pin each to the matching release.
  gomod=$(go mod download -json "k8s.io/kubernetes@${K8S}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"); do
    go mod edit -replace="$m=$m@${STAGING}"
  done
  go get "k8s.io/kubernetes/cmd/kube-apiserver@${K8S}" "k8s.io/kubernetes/cmd/kubectl@${K8S}" >&2
  minor=$(echo "$K8S" | cut -d. -f2)
  ldf="-s -w -X k8s.io/component-base/version.gitVersion=${K8S} -X k8s.io/component-base/version.gitMajor=1"
  ldf="$ldf -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/component-base/version.gitTreeState=clean"
  go build -p 2 -trimpath -ldflags "$ldf" -o "$tmp/bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >&2
)

verify "$tmp/bin" || { echo "built binaries do not report the expected versions" >&2; exit 1; }
rm -rf "$out"
mv "$tmp/bin" "$out"
echo "control plane built in $(( $(date +%s) - start ))s" >&2
echo "$out"
