#!/usr/bin/env python3
"""Lints, renders and checks charts/multinic with Helm's own Go SDK (helm-python-sdk, Helm v4).

    chart_tool.py render CASE     print the objects the chart renders for CASE as a JSON list
    chart_tool.py check [OUT]     lint strictly, render every case, validate with
                                  kubernetes-validate --strict, run the chart's guard tests

The Rust tests in crates/multinic/tests/chart_*.rs call `render` and compare the objects with
what the programs accept (controller flags, agent environment, the controller's RBAC list).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "multinic"
RELEASE = "multinic"
NAMESPACE = "multinic-system"
# The chart's kubeVersion floor and kubernetes-validate's newest schema.
KUBE_VERSIONS = ["1.27.0", "1.37.0"]

# Each case: values files from the chart's ci/ folder, merged in order (like `helm -f a -f b`).
CASES: dict[str, list[str]] = {
    "default": [],
    "daemonset": ["ci/daemonset-values.yaml"],
    "full": ["ci/full-values.yaml"],
}

# Custom resources whose schema kubernetes-validate does not ship; checked by hand below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


class CheckFailed(Exception):
    """One check found a problem; the message says which and why."""


def case_values(case: str) -> dict[str, Any]:
    if case not in CASES:
        raise CheckFailed(f"unknown case {case!r}; known: {', '.join(CASES)}")
    values: dict[str, Any] = {}
    for rel in CASES[case]:
        values = merge(values, yaml.safe_load((CHART / rel).read_text()) or {})
    return values


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Renders the chart as `helm install` would and returns every object, in template order."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for template in sorted(manifests):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(manifests[template]):
            if doc is not None:
                objects.append(doc)
    return objects


def lint(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [
        {"path": "", "error": e} for e in report["errors"]
    ]
    if problems:
        lines = "\n".join(f"  {p['path']}: {p['error']}" for p in problems)
        raise CheckFailed(f"helm lint --strict:\n{lines}")


def kubernetes_validate(objects: list[dict[str, Any]], out: Path) -> int:
    """Writes each built-in object to its own file and validates them all strictly."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for n, obj in enumerate(objects):
        if (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_KINDS:
            continue
        path = out / f"{n:02}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        files.append(str(path))
    # The one installed beside this Python (the project's .venv), else the one on PATH.
    beside = Path(sys.executable).parent / "kubernetes-validate"
    args = [str(beside) if beside.exists() else "kubernetes-validate", "--strict", "--quiet"]
    for version in KUBE_VERSIONS:
        args += ["-k", version]
    result = subprocess.run(args + files, capture_output=True, text=True)
    if result.returncode != 0 or "ERROR" in result.stdout + result.stderr:
        raise CheckFailed(f"kubernetes-validate --strict:\n{result.stdout}{result.stderr}")
    return len(files)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    if len(found) != 1:
        raise CheckFailed(f"expected one {kind}, rendered {len(found)}")
    return found[0]


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def check_service_monitor(objects: list[dict[str, Any]]) -> None:
    """The ServiceMonitor must select the metrics Service and scrape its named port."""
    for monitor in by_kind(objects, "ServiceMonitor"):
        service = one(objects, "Service")
        selector = monitor["spec"]["selector"]["matchLabels"]
        labels = service["metadata"]["labels"]
        expect(
            all(labels.get(k) == v for k, v in selector.items()),
            f"ServiceMonitor selector {selector} does not match the Service labels {labels}",
        )
        ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            expect(endpoint["port"] in ports, f"ServiceMonitor scrapes unknown port {endpoint}")


def check_crd_lifecycle(objects: list[dict[str, Any]]) -> None:
    """The CRD lives only in crds/ (installed once, never upgraded or deleted by Helm): no
    template renders one, and no hook exists that could delete and re-create it."""
    for obj in objects:
        expect(obj["kind"] != "CustomResourceDefinition", "a template renders the CRD")
        annotations = obj["metadata"].get("annotations") or {}
        hooks = [k for k in annotations if k.startswith("helm.sh/hook")]
        expect(not hooks, f"{obj['kind']}/{obj['metadata']['name']} is a Helm hook: {hooks}")


def check_controller_pod(objects: list[dict[str, Any]]) -> None:
    """Hardening of the controller: non-root, read-only root, no capabilities, seccomp."""
    for deployment in by_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        expect(pod["securityContext"].get("runAsNonRoot") is True, "controller must run non-root")
        expect(
            pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault",
            "controller needs seccomp RuntimeDefault",
        )
        for container in pod["containers"]:
            sc = container["securityContext"]
            expect(sc.get("readOnlyRootFilesystem") is True, "controller root fs must be read-only")
            expect(sc.get("allowPrivilegeEscalation") is False, "controller must not escalate")
            expect(sc["capabilities"]["drop"] == ["ALL"], "controller must drop ALL capabilities")
            expect("add" not in sc["capabilities"], "controller must add no capability")
            paths = {
                container["livenessProbe"]["httpGet"]["path"],
                container["readinessProbe"]["httpGet"]["path"],
            }
            expect(paths == {"/healthz", "/readyz"}, f"controller probes: {paths}")
        service = by_kind(objects, "Service")
        selector = deployment["spec"]["selector"]["matchLabels"]
        for svc in service:
            expect(svc["spec"]["selector"] == selector, "metrics Service must select the controller")


def check_daemonset(objects: list[dict[str, Any]]) -> None:
    """The legacy agent: no token, host network, CAP_NET_ADMIN only, secrets from a Secret."""
    for ds in by_kind(objects, "DaemonSet"):
        pod = ds["spec"]["template"]["spec"]
        expect(pod["automountServiceAccountToken"] is False, "DaemonSet must not mount a token")
        expect(pod["hostNetwork"] is True, "DaemonSet must use the host network")
        container = pod["containers"][0]
        expect(
            container["args"][:3] == ["agent", "--mode=service", "--source=db"],
            f"DaemonSet args: {container['args']}",
        )
        sc = container["securityContext"]
        if not sc.get("privileged"):
            expect(sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}, f"caps: {sc}")
            expect(sc["readOnlyRootFilesystem"] is True, "DaemonSet root fs must be read-only")
        env = {e["name"]: e for e in container["env"]}
        expect(
            env["MULTINIC_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName",
            "MULTINIC_NODE_NAME must come from spec.nodeName",
        )
        for name in env:
            if "PASSWORD" in name:
                expect(name == "DB_PASSWORD_FILE", f"{name}: the password comes only as a file")
        password = [v for v in pod["volumes"] if v["name"] == "db-password"]
        expect(
            len(password) == 1 and "secret" in password[0],
            "the database password must be a file from the Secret",
        )


# Values that must make rendering fail, and a word the error must contain.
MUST_FAIL: list[tuple[str, dict[str, Any], str]] = [
    ("misspelt key", {"controler": {"replicas": 1}}, "controler"),
    ("password in values", {"daemonset": {"db": {"password": "secret"}}}, "password"),
    (
        "verifying the database's certificate without a CA",
        {
            "daemonset": {
                "enabled": True,
                "db": {"host": "db", "existingSecret": "s", "tls": {"mode": "verify-ca"}},
            }
        },
        "caSecret",
    ),
    (
        "DaemonSet without a credentials Secret",
        {"daemonset": {"enabled": True, "db": {"host": "db"}}},
        "existingSecret",
    ),
    (
        "two replicas without leader election",
        {"controller": {"replicas": 2, "leaderElection": {"enabled": False}}},
        "leaderElection",
    ),
    (
        "a Job toleration with tolerationSeconds",
        {"job": {"tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]}},
        "tolerationSeconds",
    ),
    ("unknown watch mode", {"controller": {"mode": "sometimes"}}, "mode"),
    (
        "a ServiceMonitor without the metrics Service",
        {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
        "metrics.service.enabled",
    ),
]


def check_guards() -> int:
    for what, values, word in MUST_FAIL:
        try:
            render(values)
        except helm.HelmError as err:
            if word not in str(err):
                raise CheckFailed(f"{what}: failed, but the error does not name {word!r}: {err}")
            continue
        raise CheckFailed(f"{what}: rendered without an error")
    return len(MUST_FAIL)


# How Helm words a values.schema.json violation.
SCHEMA_ERROR = "don't meet the specifications of the schema"

# Other values tried for a free-form string leaf until one passes the chart's schema.
STRING_ALTERNATIVES = ["10.9.9.9:22", "sha256:" + "f" * 64, "7"]


def leaves(values: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(values, dict) and values:
        return [leaf for key in values for leaf in leaves(values[key], path + (key,))]
    return [path]


def with_leaf(values: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(values))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def schema_enum(schema: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    """The values the chart's schema allows at `path`, if it lists them."""
    for key in path:
        schema = schema.get("properties", {}).get(key) or schema.get("additionalProperties") or {}
        if not isinstance(schema, dict):
            return []
    return list(schema.get("enum", []))


def alternatives(value: Any, allowed: list[Any]) -> list[Any]:
    if allowed:
        return [v for v in allowed if v != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, str):
        return [value + "x"] + [s for s in STRING_ALTERNATIVES if s != value]
    if isinstance(value, list) and value:
        return [value[:-1]]
    return []  # an empty list or map: the full case must give it content


def check_every_value_matters() -> int:
    """Every value of the chart changes what it renders: none is dead, misspelt in a template,
    or dropped on its way to the programs. Starts from the `full` case (every feature on)."""
    with helm.Chart.load(CHART) as chart:
        base_values = chart.merge_values(case_values("full"))
        schema = chart.schema or {}
    base = render(base_values)
    dead, untested = [], []
    for path in leaves(base_values):
        name = ".".join(path)
        tried = False
        allowed = schema_enum(schema, path)
        for other in alternatives(base_values_at(base_values, path), allowed):
            try:
                changed = render(with_leaf(base_values, path, other))
            except helm.HelmError as err:
                if SCHEMA_ERROR in str(err):
                    continue  # outside the schema; try the next one
                changed = None  # a template's own check refused it: the value is read
            tried = True
            if changed == base:
                dead.append(name)
            break
        if not tried:
            untested.append(name)
    expect(not dead, f"values that change nothing rendered: {', '.join(dead)}")
    expect(not untested, f"values the full case cannot vary (give them content): {untested}")
    return len(leaves(base_values))


def base_values_at(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        values = values[key]
    return values


def check_crd_copy() -> None:
    """The chart ships the generated CRD byte for byte (Helm installs it from crds/)."""
    with helm.Chart.load(CHART) as chart:
        crds = chart.crds
    generated = (ROOT / "deploy/crds/multinic.io_multinicnodeconfigs.yaml").read_text()
    expect(len(crds) == 1, f"chart crds/: expected one CRD, found {len(crds)}")
    expect(crds[0]["data"] == generated, "chart crds/ differs from deploy/crds/ (copy it over)")


def check(out: Path) -> None:
    results: list[tuple[str, bool, str]] = []

    def run(name: str, step: Callable[[], str]) -> None:
        try:
            results.append((name, True, step()))
        except (CheckFailed, helm.HelmError, KeyError, TypeError) as err:
            results.append((name, False, f"{type(err).__name__}: {err}"))

    for case in CASES:
        def lint_case(case: str = case) -> str:
            lint(case_values(case))
            return "clean"

        def render_case(case: str = case) -> str:
            objects = render(case_values(case))
            n = kubernetes_validate(objects, out / case)
            check_service_monitor(objects)
            check_crd_lifecycle(objects)
            check_controller_pod(objects)
            check_daemonset(objects)
            kinds = sorted({o["kind"] for o in objects})
            return f"{len(objects)} objects ({', '.join(kinds)}), {n} validated"

        run(f"lint {case}", lint_case)
        run(f"render+validate {case}", render_case)
    run("every value reaches the output", lambda: f"{check_every_value_matters()} values")
    run("guards", lambda: f"{check_guards()} bad value sets rejected")
    run("crd copy", lambda: (check_crd_copy(), "identical")[1])

    failed = 0
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        failed += not ok
    print(f"chart: {len(results) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


def main(argv: list[str]) -> None:
    helm.disable_logging()
    if len(argv) == 2 and argv[0] == "render":
        json.dump(render(case_values(argv[1])), sys.stdout)
    elif argv and argv[0] == "check" and len(argv) <= 2:
        check(Path(argv[1]) if len(argv) == 2 else Path(tempfile.mkdtemp(prefix="chart-")))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
