#!/usr/bin/env bash
# Tally on a local kind cluster, for users with Docker: create the cluster, build and load the image,
# install the chart with the bundled PostgreSQL, apply examples/, and send a Stripe and a Cal.com event
# through a port-forward with `tally trigger`. Walk-through: charts/tally/README.md ("Try it on kind").
# Needs docker, kind, kubectl, helm (v3.8+ or v4), curl and Node.js ≥ 20.19. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-tally}
IMAGE=${IMAGE:-tally:dev}
NS=${TALLY_NAMESPACE:-tally-system}
PORT=${PORT:-8080}

for tool in docker kind kubectl helm curl node; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is not installed" >&2; exit 1; }
done

echo "== kind cluster $CLUSTER"
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kubectl config use-context "kind-$CLUSTER"

echo "== image $IMAGE"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

echo "== helm chart (bundled PostgreSQL: evaluation only)"
# Webhook URLs in status point at the port-forward below, so `tally trigger` finds them by itself.
helm upgrade --install tally charts/tally --namespace "$NS" --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set ingest.replicas=1 --set webhook.publicBaseUrl="http://127.0.0.1:$PORT" \
  --wait --timeout 5m

echo "== waiting for the operator to run ingest and the forwarder"
for _ in $(seq 90); do kubectl -n "$NS" get deployment tally-ingest >/dev/null 2>&1 && break; sleep 2; done
kubectl -n "$NS" rollout status deployment/tally-ingest --timeout=180s
kubectl -n "$NS" rollout status deployment/tally-forwarder --timeout=180s

echo "== examples/ (placeholder secrets: replace them for real providers)"
kubectl apply --server-side -f examples/
kubectl -n growth wait --for=condition=Ready stripeintegration/acme calintegration/demo-calls --timeout=180s

echo "== events through a port-forward to ingest"
[ -f dist/cli/tally.js ] || npm install
kubectl -n "$NS" port-forward svc/tally-ingest "$PORT:webhooks" >/dev/null &
forward=$!
trap 'kill $forward 2>/dev/null || true' EXIT
for _ in $(seq 30); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 1; done
node dist/cli/tally.js trigger stripe checkout.session.completed -i growth/acme
node dist/cli/tally.js trigger cal BOOKING_CREATED -i growth/demo-calls

cat <<DONE

Tally runs on kind (context kind-$CLUSTER). Revenue shows in status within 30 seconds:
  kubectl get conversions -A
  kubectl get stripeintegrations -n growth -w
More events:  kubectl -n $NS port-forward svc/tally-ingest $PORT:webhooks &
              npx tally trigger stripe invoice.paid -i growth/acme
Remove it:    kind delete cluster --name $CLUSTER
DONE
