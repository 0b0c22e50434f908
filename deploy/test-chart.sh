#!/usr/bin/env bash
# The Helm chart's checks, offline: `helm lint --strict` and `helm template | kubernetes-validate --strict` for
# each values file, then the invariants in check_chart.py (probes, the migration hook, secrets by reference
# only, no hostPath, resource requests). Tools from scripts/fetch-assets.sh k8s (pinned, cached).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh k8s
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
HELM="$CACHE/k8s-helm-4.1.4/helm"
VALIDATE="$CACHE/k8s-validate-venv/bin/kubernetes-validate"
PY="$CACHE/k8s-validate-venv/bin/python"
out="$(mktemp -d -t keel-chart.XXXXXX)"
trap 'rm -rf "$out"' EXIT
chart=deploy/helm/keel
for values in values-embedded values-scale values-scale-batch; do
  args=(-f "$chart/$values.yaml")
  case "$values" in
    values-scale-batch) args=(-f "$chart/values-scale.yaml" --set batch.enabled=true --set batch.model=churn
                              --set batch.input='s3://keel/in/part-{index}.parquet'
                              --set batch.output='s3://keel/out/scored-{index}.parquet') ;;
  esac
  echo "chart: $values" >&2
  "$HELM" lint --strict "$chart" "${args[@]}" >&2
  "$HELM" template keel "$chart" "${args[@]}" >"$out/$values.yaml"
  "$VALIDATE" --strict -k 1.35.0 "$out/$values.yaml" >&2
  "$PY" deploy/check_chart.py "$values" "$out/$values.yaml"
done
# Wrong values are refused with what to do.
if "$HELM" template keel "$chart" -f "$chart/values-scale.yaml" --set database.existingSecret= >/dev/null 2>"$out/err"; then
  echo "chart: scale mode without a database Secret rendered" >&2; exit 1
fi
grep -q "database.existingSecret" "$out/err"
if "$HELM" template keel "$chart" -f "$chart/values-embedded.yaml" --set serve.replicas=3 >/dev/null 2>"$out/err"; then
  echo "chart: embedded mode with 3 replicas rendered" >&2; exit 1
fi
grep -q "embedded mode runs one replica" "$out/err"
echo "chart: all checks passed" >&2
