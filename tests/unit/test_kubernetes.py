"""The Kubernetes manifests (deploy/kubernetes), rendered the way an operator
applies them: `kubectl kustomize` over a copy of the tree with freshly made keys
(`pmip6ctl keygen`). Every rendered object is validated against the Kubernetes
API schema (kubernetes-validate, strict: no unknown field); the Prometheus
Operator's objects against the fields this file names, and the PrometheusRule's
rules by promtool. Then the properties issue 15 asks for: no privileged daemon
container, capabilities dropped and only the named ones added, no service account
token, one Secret per node mounted only into that node's pod with mode 0400, no
key in any ConfigMap, generated names that change with their content (so that a
change rolls the pod), probes on /healthz."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from pmip6ctl.config import KNOWN_KEYS, parse_config
from pmip6ctl.io.files import write_private
from pmip6ctl.security import new_peer_key

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
ROLES = ("lma", "mag", "cn")
NODES = {"lma": "lma", "mag1": "mag", "mag2": "mag", "cn": "cn"}
# The API version the manifests are written for: appArmorProfile is a field from 1.30 on.
KUBERNETES_VERSION = "1.30.0"
DAEMON_CAPABILITIES = {"BPF", "PERFMON", "NET_ADMIN", "NET_RAW", "SYS_ADMIN"}
METRICS_PORT = 9436
HEX_KEY = re.compile(r"\b[0-9a-fA-F]{32,}\b")


def require(tool: str, why: str) -> str:
    """The tool's path; without it a CI run fails, a developer's run skips, saying why."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed: {why}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def yaml_module():
    import yaml   # a test dependency (pyproject [test]): missing is a failure, not a skip
    return yaml


# --- rendering ---------------------------------------------------------------------------------

def kustomization(directory: Path) -> dict:
    return yaml_module().safe_load((directory / "kustomization.yaml").read_text())


def node_key_files(node: str) -> list[str]:
    """The key files the node's Secret is generated from (its kustomization's secretGenerator)."""
    [generator] = kustomization(KUBERNETES / "nodes" / node)["secretGenerator"]
    return generator["files"]


def copy_with_keys(destination: Path) -> Path:
    """deploy/kubernetes with each node's keys made as the README says: one per pair of nodes."""
    tree = destination / "kubernetes"
    shutil.copytree(KUBERNETES, tree)
    pairs: dict[str, str] = {}
    for node in NODES:
        for name in node_key_files(node):
            key = pairs.setdefault(Path(name).name, new_peer_key().hex() + "\n")
            (tree / "nodes" / node / name).parent.mkdir(exist_ok=True)
            write_private(tree / "nodes" / node / name, key)
    return tree


def kustomize(tree: Path) -> list[dict]:
    kubectl = require("kubectl", "its built-in kustomize renders deploy/kubernetes "
                                 "(preinstalled on this machine's kind and on GitHub's runners)")
    result = subprocess.run([kubectl, "kustomize", str(tree)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml_module().safe_load_all(result.stdout) if d is not None]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[dict]:
    return kustomize(copy_with_keys(tmp_path_factory.mktemp("k8s")))


@pytest.fixture(scope="module")
def monitoring() -> list[dict]:
    return kustomize(KUBERNETES / "monitoring")


def of_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def daemon_sets(documents: list[dict]) -> dict[str, dict]:
    """By pmip6ctl node name (the nodeSelector's pmip6ctl/node)."""
    return {d["spec"]["template"]["spec"]["nodeSelector"]["pmip6ctl/node"]: d
            for d in documents if d["kind"] == "DaemonSet"}


def pod(daemon_set: dict) -> dict:
    return daemon_set["spec"]["template"]["spec"]


def all_containers(daemon_set: dict) -> list[dict]:
    return pod(daemon_set).get("initContainers", []) + pod(daemon_set)["containers"]


# --- schema ------------------------------------------------------------------------------------

def test_every_rendered_object_is_valid_for_the_kubernetes_api(rendered, monitoring):
    import kubernetes_validate   # a test dependency (pyproject [test])

    kinds = {d["kind"] for d in rendered}
    assert kinds == {"Namespace", "ConfigMap", "Secret", "DaemonSet"}, kinds
    problems = []
    for document in rendered + [d for d in monitoring if d["kind"] == "Service"]:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{document['kind']}/{document['metadata']['name']}: "
                            f"{'.'.join(map(str, error.path))}: {error.message}")
    assert not problems, "\n".join(problems)


def test_the_validator_refuses_what_the_api_server_would():
    """The validation above can fail: an unknown field, a wrong type and a privileged
    typo are refused."""
    import kubernetes_validate

    broken = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"},
              "spec": {"selector": {"matchLabels": {"a": "b"}},
                       "template": {"metadata": {"labels": {"a": "b"}},
                                    "spec": {"containers": [{"name": "c", "image": "i",
                                                             "securityContext": {"privileged": "yes"}}]}}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"capabilities": {"drops": ["ALL"]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# The Prometheus Operator's CRDs are not in kubernetes-validate: these are the
# fields of monitoring.coreos.com/v1 that the manifests use, and no others.
RULE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["expr"],
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "properties": {"record": {"type": "string"}, "alert": {"type": "string"},
                   "expr": {"type": "string"}, "for": {"type": "string", "pattern": r"^(\d+(ms|s|m|h|d|w|y))+$"},
                   "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                   "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}
METADATA_SCHEMA = {
    "type": "object", "required": ["name", "namespace"],
    "properties": {"name": {"type": "string"}, "namespace": {"const": "pmip6ctl"},
                   "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}
PROMETHEUS_RULE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
        "metadata": METADATA_SCHEMA,
        "spec": {"type": "object", "additionalProperties": False, "required": ["groups"], "properties": {
            "groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "rules"],
                "properties": {"name": {"type": "string"}, "interval": {"type": "string"},
                               "rules": {"type": "array", "minItems": 1, "items": RULE_SCHEMA}}}}}}}}
SERVICE_MONITOR_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "metadata": METADATA_SCHEMA,
        "spec": {"type": "object", "additionalProperties": False, "required": ["selector", "endpoints"], "properties": {
            "selector": {"type": "object", "additionalProperties": False,
                         "properties": {"matchLabels": {"type": "object",
                                                        "additionalProperties": {"type": "string"}}}},
            "namespaceSelector": {"type": "object", "additionalProperties": False,
                                  "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}}},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["port"],
                "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                               "interval": {"type": "string"}}}}}}}}


def test_operator_objects_have_only_known_fields_and_the_rules_pass_promtool(monitoring, tmp_path):
    import jsonschema   # kubernetes-validate's own dependency
    yaml = yaml_module()

    rules = of_kind(monitoring, "PrometheusRule")
    monitors = of_kind(monitoring, "ServiceMonitor")
    assert len(rules) == 1 and len(monitors) == 1
    [rule] = rules.values()
    [monitor] = monitors.values()
    jsonschema.validate(rule, PROMETHEUS_RULE_SCHEMA)
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**rule, "spec": {"groups": [{"name": "g", "rules": [{"expr": "up"}]}]}},
                            PROMETHEUS_RULE_SCHEMA)

    promtool = require("promtool", "it checks the PrometheusRule's rules (Debian package prometheus)")
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run([promtool, "check", "rules", str(extracted)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_prometheusrule_carries_deploy_prometheus_rules_yml(monitoring):
    yaml = yaml_module()
    [rule] = of_kind(monitoring, "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load(RULES.read_text()), \
        "deploy/prometheus/rules.yml changed: run deploy/kubernetes/monitoring/make-prometheusrule"


def test_servicemonitor_scrapes_the_metrics_port_with_the_rules_job_names(monitoring, rendered):
    services = of_kind(monitoring, "Service")
    assert set(services) == {"pmip6-lma", "pmip6-mag", "pmip6-cn"}   # the job label a ServiceMonitor gives
    [monitor] = of_kind(monitoring, "ServiceMonitor").values()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= next(iter(services.values()))["metadata"][
        "labels"].items()
    for name, service in services.items():
        role = name.removeprefix("pmip6-")
        selected = [n for n, d in daemon_sets(rendered).items()
                    if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert sorted(selected) == sorted(n for n, r in NODES.items() if r == role), name
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]


# --- least privilege -----------------------------------------------------------------------------

def test_only_the_bpffs_init_container_is_privileged(rendered):
    for node, daemon_set in daemon_sets(rendered).items():
        privileged = [c["name"] for c in all_containers(daemon_set)
                      if c.get("securityContext", {}).get("privileged") is True]
        assert privileged == ["bpffs"], (node, privileged)
        [bpffs] = [c for c in pod(daemon_set)["initContainers"] if c["name"] == "bpffs"]
        assert "mount -t bpf" in " ".join(bpffs["command"])
        bidirectional = [(c["name"], m["mountPath"]) for c in all_containers(daemon_set)
                         for m in c.get("volumeMounts", []) if m.get("mountPropagation") == "Bidirectional"]
        assert bidirectional == [("bpffs", "/sys/fs/bpf")], node


def test_every_other_container_drops_all_and_adds_only_the_named_capabilities(rendered):
    for node, daemon_set in daemon_sets(rendered).items():
        role = NODES[node]
        for container in all_containers(daemon_set):
            if container["name"] == "bpffs":
                continue
            security = container["securityContext"]
            assert security["capabilities"]["drop"] == ["ALL"], (node, container["name"])
            assert security["allowPrivilegeEscalation"] is False, (node, container["name"])
            added = set(security["capabilities"].get("add", []))
            if container["name"] == role:
                assert added == DAEMON_CAPABILITIES, (node, added)
            else:
                assert not added, (node, container["name"], added)


def test_no_service_account_token_in_any_pod(rendered):
    for node, daemon_set in daemon_sets(rendered).items():
        assert pod(daemon_set)["automountServiceAccountToken"] is False, node


@pytest.mark.parametrize("node", NODES)
def test_daemon_runs_its_role_on_the_host_network_with_the_host_paths(rendered, node):
    daemon_set = daemon_sets(rendered)[node]
    spec = daemon_set["spec"]
    assert daemon_set["metadata"]["name"] == f"pmip6ctl-{node}"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["selector"]["matchLabels"]["pmip6ctl/node"] == node   # no two DaemonSets share a pod
    spec_pod = pod(daemon_set)
    assert spec_pod["hostNetwork"] is True
    assert spec_pod["nodeSelector"] == {"pmip6ctl/node": node}
    [container] = spec_pod["containers"]
    assert container["name"] == NODES[node]
    assert container["args"] == [NODES[node], "run", "-c", "/etc/pmip6ctl/node.toml"]
    check = next(c for c in spec_pod["initContainers"] if c["name"] == "config-check")
    assert check["args"] == ["config", "check", "/etc/pmip6ctl/node.toml"]

    volumes = {v["name"]: v for v in spec_pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    host_paths = {path: volumes[m["name"]].get("hostPath", {}).get("path") for path, m in mounts.items()}
    assert host_paths["/sys/fs/bpf"] == "/sys/fs/bpf"
    assert mounts["/sys/fs/bpf"]["mountPropagation"] == "HostToContainer"
    for path in ("/lib/modules", "/usr/src"):
        assert host_paths[path] == path and mounts[path]["readOnly"] is True
    assert host_paths["/run/pmip6ctl"] == "/run/pmip6ctl"
    assert host_paths["/var/lib/pmip6ctl"] == "/var/lib/pmip6ctl"   # the node's store

    annotations = spec["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/port") == str(METRICS_PORT)
    assert {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"} in container["ports"]


@pytest.mark.parametrize("node", NODES)
def test_probes_ask_healthz_on_the_metrics_listener(rendered, node):
    [container] = pod(daemon_sets(rendered)[node])["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz", probe
        assert named.get(get["port"], get["port"]) == METRICS_PORT, probe
        # the kubelet reaches the pod's (the node's) address unless told otherwise:
        # the daemon must listen there
        if get.get("host") not in ("127.0.0.1", "::1"):
            config = parse_config((KUBERNETES / "nodes" / node / "node.toml").read_text(), node)
            assert config.metrics.host not in ("127.0.0.1", "::1", "localhost"), probe


# --- keys and configuration ----------------------------------------------------------------------

def mounted(daemon_set: dict, kind: str) -> dict[str, dict]:
    """Volumes of that kind (configMap, secret), by the object they name."""
    field = "secretName" if kind == "secret" else "name"
    return {v[kind][field]: v for v in pod(daemon_set)["volumes"] if kind in v}


def test_each_node_has_its_own_secret_mounted_into_its_pod_only_with_mode_0400(rendered):
    secrets = of_kind(rendered, "Secret")
    assert len(secrets) == len(NODES)
    owners: dict[str, list[str]] = {name: [] for name in secrets}
    for node, daemon_set in daemon_sets(rendered).items():
        volumes = mounted(daemon_set, "secret")
        assert len(volumes) == 1, node
        [(name, volume)] = volumes.items()
        assert name in secrets, f"{node}: Secret {name} is not rendered"
        owners[name].append(node)
        assert secrets[name]["metadata"]["labels"]["pmip6ctl/node"] == node
        assert volume["secret"]["defaultMode"] == 0o400, node
        assert all(item.get("mode", 0o400) == 0o400 for item in volume["secret"].get("items", []))
        # mounted read-only, only where the daemon (and its config check) read keys
        for container in all_containers(daemon_set):
            for mount in container.get("volumeMounts", []):
                if mount["name"] == volume["name"]:
                    assert mount["readOnly"] is True and mount["mountPath"] == "/etc/pmip6ctl-keys"
    assert all(len(nodes) == 1 for nodes in owners.values()), owners


def test_each_node_secret_holds_exactly_the_keys_its_config_names(rendered):
    for node, daemon_set in daemon_sets(rendered).items():
        [secret_name] = mounted(daemon_set, "secret")
        secret = of_kind(rendered, "Secret")[secret_name]
        config = tomllib.loads((KUBERNETES / "nodes" / node / "node.toml").read_text())
        wanted = {Path(peer["key_file"]) for peer in config["peers"]}
        assert {p.parent for p in wanted} == {Path("/etc/pmip6ctl-keys")}, node
        assert set(secret["data"]) == {p.name for p in wanted}, node


def test_no_configmap_holds_key_material(rendered):
    for name, config_map in of_kind(rendered, "ConfigMap").items():
        assert not config_map.get("binaryData"), name
        for key, value in config_map["data"].items():
            assert not key.endswith(".key"), (name, key)
            assert not HEX_KEY.search(value), f"{name}/{key}: something that looks like a key"
            assert not re.search(r"^\s*key\s*=", value, re.M), f"{name}/{key}: an inline key"


def test_key_files_are_never_committed():
    tracked = subprocess.run(["git", "ls-files", "deploy/kubernetes"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert tracked, "not a git checkout?"
    assert not [p for p in tracked if p.endswith(".key") or "/keys/" in p]
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/kubernetes/nodes/mag1/keys/lma-mag1.key"],
                             cwd=ROOT)
    assert ignored.returncode == 0, "nodes/*/keys/ must be git-ignored"


def unknown_keys(document: dict, section: str = "") -> list[str]:
    """Dotted keys that KNOWN_KEYS does not list (mag.mn_ids is a mapping, not a table)."""
    problems = []
    for key, value in document.items():
        dotted = f"{section}.{key}" if section else key
        if not section:
            if key not in KNOWN_KEYS:
                problems.append(dotted)
                continue
            tables = [value] if isinstance(value, dict) else value
            for table in tables:
                problems += unknown_keys(table, dotted)
        elif key not in KNOWN_KEYS[section]:
            problems.append(dotted)
        elif dotted in KNOWN_KEYS:   # a nested table such as lma.ro_policy
            for table in (value if isinstance(value, list) else [value]):
                problems += unknown_keys(table, dotted)
    return problems


@pytest.mark.parametrize("node", NODES)
def test_each_node_configmap_holds_its_config_which_loads(rendered, node):
    daemon_set = daemon_sets(rendered)[node]
    [name] = mounted(daemon_set, "configMap")
    config_map = of_kind(rendered, "ConfigMap")[name]
    assert set(config_map["data"]) == {"node.toml"}
    text = config_map["data"]["node.toml"]
    assert text == (KUBERNETES / "nodes" / node / "node.toml").read_text()
    config = parse_config(text, f"{name}/node.toml")
    assert (config.node.name, config.node.role) == (node, NODES[node])
    assert unknown_keys(tomllib.loads(text)) == []
    assert config.metrics.port == METRICS_PORT
    assert config.metrics.host not in ("127.0.0.1", "::1"), "Prometheus cannot scrape loopback"


def test_a_changed_config_or_key_renames_what_the_pod_mounts_so_the_pod_rolls(tmp_path):
    tree = copy_with_keys(tmp_path)
    before = daemon_sets(kustomize(tree))
    with (tree / "nodes" / "mag1" / "node.toml").open("a") as f:
        f.write("\n# changed\n")
    write_private(tree / "nodes" / "mag2" / "keys" / "lma-mag2.key", new_peer_key().hex() + "\n")
    after = daemon_sets(kustomize(tree))
    for node in NODES:
        changed_config = mounted(before[node], "configMap").keys() != mounted(after[node], "configMap").keys()
        changed_keys = mounted(before[node], "secret").keys() != mounted(after[node], "secret").keys()
        assert (changed_config, changed_keys) == (node == "mag1", node == "mag2"), node
        assert (before[node]["spec"]["template"] != after[node]["spec"]["template"]) == (node in ("mag1", "mag2"))


def test_the_top_kustomization_applies_every_node_and_names_the_namespace():
    top = kustomization(KUBERNETES)
    assert top["namespace"] == "pmip6ctl"
    assert sorted(r.removeprefix("nodes/") for r in top["resources"] if r.startswith("nodes/")) == sorted(NODES)
    for node, role in NODES.items():
        overlay = kustomization(KUBERNETES / "nodes" / node)
        assert overlay["resources"] == [f"../../base/{role}"]
        [generator] = overlay["configMapGenerator"]
        assert generator["files"] == ["node.toml"]
        assert "disableNameSuffixHash" not in str(overlay), "the hash suffix is what rolls the pods"
