#!/usr/bin/env bash
# Builds querygate's image inside minikube and deploys kustomize/overlays/minikube
# (namespace querygate, bridge on NodePort 31234, DEV-ONLY credentials), then
# prints the bridge's URL and a sample query. Run it again after a code change.
#   MINIKUBE_START_ARGS  extra flags for `minikube start` when minikube is not running
#   ROLLOUT_TIMEOUT      how long to wait for each rollout (default 300s)
set -euo pipefail
cd "$(dirname "$0")/.."

namespace=querygate
timeout=${ROLLOUT_TIMEOUT:-300s}
for tool in minikube kubectl; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is not installed" >&2; exit 1; }
done

if ! minikube status >/dev/null 2>&1; then
  echo "==> starting minikube (Calico CNI, so the NetworkPolicies are enforced)"
  # shellcheck disable=SC2086 # MINIKUBE_START_ARGS is a list of flags
  minikube start --cni=calico ${MINIKUBE_START_ARGS:-}
fi
kubectl config use-context minikube >/dev/null

echo "==> building querygate:dev inside minikube"
minikube image build -t querygate:dev .

echo "==> applying kustomize/overlays/minikube"
existed=$(kubectl -n "$namespace" get deployment query-grpc -o name 2>/dev/null || true)
kubectl apply -k kustomize/overlays/minikube
if [ -n "$existed" ]; then
  # Same tag, new image: restart so the pods run the build just made.
  kubectl -n "$namespace" rollout restart deployment/query-grpc deployment/http-bridge
fi

echo "==> waiting for the rollouts"
kubectl -n "$namespace" rollout status statefulset/postgres --timeout="$timeout"
kubectl -n "$namespace" rollout status deployment/query-grpc --timeout="$timeout"
kubectl -n "$namespace" rollout status deployment/http-bridge --timeout="$timeout"

if [ "$(uname -s)" = Darwin ]; then
  # With the docker driver (the default on macOS) `minikube service --url`
  # holds a tunnel open in the foreground instead of returning.
  echo
  echo "querygate is up. On macOS the node port may not be reachable directly:"
  echo "run   minikube service http-bridge -n $namespace --url   in another terminal and use the URL it prints."
  url='http://127.0.0.1:PORT'
else
  url=$(minikube service http-bridge -n "$namespace" --url | head -n 1)
  echo
  echo "querygate is up: $url"
fi
cat <<MSG

Sample query (DEV-ONLY token querygate-dev-token, see kustomize/base/dev-defaults/README.md):

  curl -sS -X POST '$url/query' \\
    -H 'content-type: application/json' \\
    -H 'authorization: Bearer querygate-dev-token' \\
    -d '{"query": "select 1 as one"}'

Logs:      kubectl -n $namespace logs deploy/query-grpc -f
Tear down: scripts/minikube-down.sh [--delete-cluster]
MSG
