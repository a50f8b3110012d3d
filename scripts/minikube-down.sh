#!/usr/bin/env bash
# Removes what scripts/minikube-up.sh deployed: the querygate namespace with
# everything in it, the database volume included. --delete-cluster also
# deletes the minikube cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

delete_cluster=false
for arg in "$@"; do
  case "$arg" in
    --delete-cluster) delete_cluster=true ;;
    *) echo "usage: $0 [--delete-cluster]" >&2; exit 2 ;;
  esac
done

if ! minikube status >/dev/null 2>&1; then
  echo "minikube is not running; nothing to remove from it"
else
  kubectl config use-context minikube >/dev/null
  echo "==> deleting kustomize/overlays/minikube (namespace querygate, its volumes too)"
  kubectl delete -k kustomize/overlays/minikube --ignore-not-found --wait=true
  minikube image rm querygate:dev >/dev/null 2>&1 || true
fi

if [ "$delete_cluster" = true ]; then
  echo "==> deleting the minikube cluster"
  minikube delete
fi
