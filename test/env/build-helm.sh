#!/usr/bin/env bash
# Builds helm from the Go module proxy (helm.sh/helm/v4) and fetches the prometheus-operator CRDs the
# chart's ServiceMonitor and PrometheusRule need (from the module's example/prometheus-operator-crd/)
# into a version-keyed cache folder, once per machine. Prints that folder on its last line:
# <folder>/helm and <folder>/crds/*.yaml. Same cache and conventions as build-control-plane.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
versions="$here/helm.json"
HELM=$(node -p "require('$versions').helm")
PROMOP=$(node -p "require('$versions').prometheusOperator")
GOV=$(go env GOVERSION)
ARCH="$(go env GOOS)-$(go env GOARCH)"
hash=$(cat "$0" "$versions" | sha256sum | cut -c1-8)
root="${TALLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally}/helm"
out="$root/helm-${HELM}_prometheus-operator-${PROMOP}_${GOV}_${ARCH}_${hash}"

verify() {
  [ -x "$1/helm" ] && [ "$("$1/helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM" ] &&
    [ -s "$1/crds/monitoring.coreos.com_servicemonitors.yaml" ] &&
    [ -s "$1/crds/monitoring.coreos.com_prometheusrules.yaml" ]
}

if verify "$out"; then
  echo "$out"
  exit 0
fi
# Test files in parallel workers may ask at once: one builds, the others wait and reuse it.
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9
if verify "$out"; then
  echo "$out"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0
tmp=$(mktemp -d "$root/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/out/crds"
start=$(date +%s)

echo "building helm ${HELM} (first run on this machine only; about 4 minutes)" >&2
# go install pkg@version builds outside any module; -X sets what `helm version` reports.
(cd "$tmp" && GOBIN="$tmp/out" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${HELM}" "helm.sh/helm/v4/cmd/helm@${HELM}" >&2)

echo "fetching the prometheus-operator ${PROMOP} CRDs" >&2
dir=$(cd "$tmp" && go mod download -json "github.com/prometheus-operator/prometheus-operator@${PROMOP}" |
  sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
for kind in servicemonitors prometheusrules; do
  cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_${kind}.yaml" "$tmp/out/crds/"
done
chmod -R u+w "$tmp/out"

verify "$tmp/out" || { echo "built helm does not report ${HELM}" >&2; exit 1; }
rm -rf "$out"
mv "$tmp/out" "$out"
echo "helm built in $(( $(date +%s) - start ))s" >&2
echo "$out"
