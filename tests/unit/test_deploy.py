"""The deployment files, checked statically (no root, no daemons): the Grafana
dashboard and the Prometheus rules use only the metric names the daemons export
(DESIGN §6) and every panel has a data source; promtool accepts the rules and the
example scrape config; the systemd units verify and run `pmip6ctl <role> run -c`;
the container image ships what the daemons need. The Kubernetes manifests:
test_kubernetes.py. A check whose tool is missing skips, saying so."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = ROOT / "grafana" / "dashboards" / "pmip6ctl.json"
RULES = DEPLOY / "prometheus" / "rules.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
SYSTEMD = DEPLOY / "systemd"
ROLES = ("lma", "mag", "cn")

# What the daemons export (pmip6ctl/metrics.py, DESIGN §6), plus the process
# collector's process_* and Prometheus's own `up`.
METRICS = frozenset({
    "pmip6_dataplane_packets_total", "pmip6_dataplane_bytes_total",
    "pmip6_signaling_messages_total",
    "pmip6_ro_setup_seconds_bucket", "pmip6_ro_setup_seconds_sum", "pmip6_ro_setup_seconds_count",
    "pmip6_ro_attempts_total",
    "pmip6_bindings", "pmip6_mobile_nodes",
    "pmip6_bpf_map_entries", "pmip6_bpf_map_capacity",
    "pmip6_daemon_info", "up",
    "pmip6_config_reloads_total", "pmip6_tunnels_refused_total",
    "pmip6_dataplane_events_total", "pmip6_dataplane_events_dropped_total", "pmip6_log_lines_suppressed_total",
    "pmip6_event_queue_depth", "pmip6_event_queue_capacity", "pmip6_event_loop_tick_age_seconds",
    "pmip6_table_entries", "pmip6_table_capacity", "pmip6_table_pushed_out_total", "pmip6_table_refused_total",
})
PROCESS_METRIC = re.compile(r"process_[a-z_]+")
DATASOURCE_UIDS = {"${DS_PROMETHEUS}", "$DS_PROMETHEUS", "prometheus"}


def yaml_module():
    try:
        import yaml  # Debian's python3-yaml, through the venv's --system-site-packages
    except ImportError:
        pytest.skip("PyYAML is not importable (install python3-yaml)")
    return yaml


# --- PromQL: which metric names does an expression use? -----------------------------------

PROMQL_FUNCTIONS = frozenset("""
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp
    clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month
    deg delta deriv exp floor histogram_count histogram_fraction histogram_quantile histogram_sum
    holt_winters hour idelta increase irate label_join label_replace last_over_time ln log10 log2
    max_over_time min_over_time minute month pi predict_linear present_over_time quantile_over_time
    rad rate resets round scalar sgn sin sinh sort sort_desc sqrt stddev_over_time stdvar_over_time
    sum_over_time tan tanh time timestamp vector year
    sum min max avg group stddev stdvar count count_values bottomk topk quantile
""".split())
PROMQL_KEYWORDS = frozenset("and or unless by without on ignoring group_left group_right offset bool".split())
PROMQL_CONSTANTS = frozenset({"nan", "inf"})

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*(?=\s*(\()?)")


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, functions and aggregations) an expression uses. Strings, label
    matchers, grouping label lists, ranges, offsets and numbers are taken out first,
    so what remains is metric names, calls and keywords."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)        # {node=~"$node", ...}
    text = _LABEL_LIST.sub(" ", text)      # sum by (node) (x) -> sum (x); on (node) -> gone
    text = _RANGE.sub(" ", text)           # [5m]
    text = _OFFSET.sub(" ", text)          # offset 5m
    text = _NUMBER.sub(" ", text)
    metrics, calls = set(), set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(0)
        if name.lower() in PROMQL_KEYWORDS or name.lower() in PROMQL_CONSTANTS:
            continue
        (calls if match.group(1) else metrics).add(name)
    return metrics, calls


def unknown_names(expr: str) -> list[str]:
    metrics, calls = promql_names(expr)
    bad = [f"metric {m}" for m in sorted(metrics) if m not in METRICS and not PROCESS_METRIC.fullmatch(m)]
    bad += [f"function {c}" for c in sorted(calls) if c not in PROMQL_FUNCTIONS]
    return bad


def test_the_promql_name_parser_finds_metrics_and_ignores_labels_and_functions():
    metrics, calls = promql_names(
        'histogram_quantile(0.99, sum by (node, mode, le) (rate(pmip6_ro_setup_seconds_bucket'
        '{node=~"$node", mode="rr"}[5m] offset 1h))) / on (node) group_left (role) pmip6_daemon_info'
        ' or vector(0) and bogus_metric > 1e3')
    assert metrics == {"pmip6_ro_setup_seconds_bucket", "pmip6_daemon_info", "bogus_metric"}
    assert calls == {"histogram_quantile", "sum", "rate", "vector"}
    assert unknown_names('sum(rate(pmip6_dataplane_bytes_total[5m])) / process_cpu_seconds_total') == []
    assert unknown_names("pmip6_ro_setup_seconds") == ["metric pmip6_ro_setup_seconds"]
    assert unknown_names("sum(rat(up[5m]))") == ["function rat"]


# --- Grafana ---------------------------------------------------------------------------------

def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])   # panels inside collapsed rows


def dashboard_targets(dashboard: dict):
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def test_dashboard_is_grafana_json_with_datasource_and_node_variables():
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables["DS_PROMETHEUS"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    node = variables["node"]
    query = node["query"]["query"] if isinstance(node["query"], dict) else node["query"]
    assert query.replace(" ", "") == "label_values(pmip6_daemon_info,node)"
    assert node["multi"] is True and node["includeAll"] is True
    ids = [p["id"] for p in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_dashboard_panel_and_target_has_a_prometheus_datasource():
    for panel in all_panels(load_dashboard()):
        if panel["type"] == "row" and not panel.get("targets"):
            continue
        source = panel.get("datasource")
        assert isinstance(source, dict) and source.get("uid") in DATASOURCE_UIDS, panel["title"]
        assert panel.get("targets"), f"{panel['title']!r} has no query"
        for target in panel["targets"]:
            if "datasource" in target:
                assert target["datasource"].get("uid") in DATASOURCE_UIDS, (panel["title"], target["refId"])


def test_dashboard_queries_use_only_the_daemons_metric_names():
    problems = []
    for panel, target in dashboard_targets(load_dashboard()):
        expr = target["expr"]
        metrics, _ = promql_names(expr)
        if not metrics:
            problems.append(f"{panel['title']} [{target['refId']}]: no metric in {expr!r}")
        problems += [f"{panel['title']} [{target['refId']}]: {bad}" for bad in unknown_names(expr)]
        # $node is the only dashboard variable an expression may use, as a regex matcher
        # (and Grafana's own $__rate_interval as a range)
        for variable in re.findall(r"\$\{?(\w+)", expr):
            if variable not in ("node", "__rate_interval"):
                problems.append(f"{panel['title']} [{target['refId']}]: variable ${variable}")
        if "$node" in expr and 'node=~"$node"' not in expr:
            problems.append(f"{panel['title']} [{target['refId']}]: $node outside node=~\"$node\"")
    assert not problems, "\n".join(problems)


def test_dashboard_rates_use_the_rate_interval():
    """$__rate_interval: at least four scrapes whatever the scrape interval and
    the zoom, where a fixed [5m] turns into gaps or noise."""
    found = 0
    for _, target in dashboard_targets(load_dashboard()):
        expr = target["expr"]
        for function, window in re.findall(r"\b(rate|irate|increase|delta|deriv)\([^\[\]]*\[([^\]]*)\]", expr):
            assert window == "$__rate_interval", f"{function}(...[{window}]) in {expr}"
            found += 1
    assert found >= 10


def test_dashboard_has_the_headline_ro_share_and_the_promised_panels():
    exprs = [" ".join(t["expr"].split()) for _, t in dashboard_targets(load_dashboard())]
    headline = [e for e in exprs if 'reason="fwd_encap_ro"' in e and 'reason=~"fwd_encap_ro|fwd_encap_pmip"' in e]
    assert headline, "the share of MN bytes bypassing the LMA is missing"
    assert all('program="mag_access"' in e for e in headline)
    for needle in ("pmip6_mobile_nodes", "pmip6_bindings", 'map="ro_table"', "pmip6_ro_attempts_total",
                   "histogram_quantile(0.5,", "histogram_quantile(0.99,", 'verdict="drop"',
                   "pmip6_signaling_messages_total", 'result!~"ok|accepted"', "pmip6_bpf_map_capacity"):
        assert any(needle in e for e in exprs), needle


def test_grafana_provisioning_points_at_uid_prometheus_and_the_dashboard_files():
    yaml = yaml_module()
    sources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    [source] = sources["datasources"]
    assert (source["type"], source["uid"]) == ("prometheus", "prometheus")
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/pmip6ctl.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


# --- Prometheus --------------------------------------------------------------------------------

def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_example_scrape_config():
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def load_rules() -> list[dict]:
    yaml = yaml_module()
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_rules_use_only_the_daemons_metric_names():
    problems = [f"{rule.get('record') or rule.get('alert')}: {bad}"
                for rule in load_rules() for bad in unknown_names(rule["expr"])]
    assert not problems, "\n".join(problems)


def test_rules_record_the_ro_share_and_setup_quantiles_and_alert_on_what_matters():
    rules = load_rules()
    records = {r["record"]: " ".join(r["expr"].split()) for r in rules if "record" in r}
    alerts = {r["alert"]: " ".join(r["expr"].split()) for r in rules if "alert" in r}
    assert any('reason="fwd_encap_ro"' in e and "fwd_encap_pmip" in e for e in records.values())
    assert any("histogram_quantile(0.5," in e for e in records.values())
    assert any("histogram_quantile(0.99," in e for e in records.values())
    wanted = {"up == 0": "daemon down", 'type="pba"': "binding churn", 'result="failed"': "RO failures",
              "pmip6_bpf_map_capacity": "map near capacity", 'verdict="drop"': "drops spike",
              "bad_authenticator": "refused signaling", "pmip6_config_reloads_total": "reload failed"}
    for needle, what in wanted.items():
        assert any(needle in e for e in alerts.values()), what


def test_the_daemon_down_alerts_do_not_depend_on_job_names():
    alerts = {r["alert"]: " ".join(r["expr"].split()) for r in load_rules() if "alert" in r}
    for rule in load_rules():
        assert "job=" not in rule["expr"] and "job!" not in rule["expr"], rule.get("alert") or rule.get("record")
    down = alerts["Pmip6DaemonDown"]
    assert down.startswith("up == 0 and on (job, instance)") and "pmip6_daemon_info" in down
    assert 'absent(pmip6_daemon_info{role="lma"})' in alerts["Pmip6DaemonMissing"]


RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_BASE = "https://pmip6ctl.example.net/docs/runbook.md#"


def markdown_anchors(text: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation out, spaces to -."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in text.splitlines() if line.startswith("#")}


def test_every_alert_has_a_runbook_section():
    anchors = markdown_anchors(RUNBOOK.read_text())
    for rule in load_rules():
        if "alert" not in rule:
            continue
        url = rule["annotations"].get("runbook_url", "")
        assert url == RUNBOOK_BASE + rule["alert"].lower(), rule["alert"]
        assert rule["alert"].lower() in anchors, f"docs/runbook.md has no section {rule['alert']}"


# --- systemd -----------------------------------------------------------------------------------

UNITS = {"lma": "pmip6ctl-lma.service", "mag": "pmip6ctl-mag@.service", "cn": "pmip6ctl-cn.service"}
BPFFS_UNIT = "pmip6ctl-bpffs.service"
CAPABILITIES = {"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"}


def read_unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str   # systemd keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text(), source=name)
    return parser


@pytest.mark.parametrize("role", ROLES)
def test_unit_runs_the_role_after_checking_its_config(role):
    unit = read_unit(UNITS[role])
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "pmip6ctl" and argv[0].startswith("/")
    assert argv[1:4] == [role, "run", "-c"] and len(argv) == 5
    config = argv[4]
    assert config.startswith("/etc/pmip6ctl/") and config.endswith(".toml")
    if role == "mag":
        assert config == "/etc/pmip6ctl/%i.toml", "the MAG template names its config by instance"
    else:
        assert config == f"/etc/pmip6ctl/{role}.toml"
    assert shlex.split(service["ExecStartPre"]) == [argv[0], "config", "check", config]
    assert service["Restart"] == "on-failure"
    assert BPFFS_UNIT in unit["Unit"]["Requires"].split() and BPFFS_UNIT in unit["Unit"]["After"].split()


@pytest.mark.parametrize("role", ROLES)
def test_unit_keeps_xdp_and_bcc_working_under_its_hardening(role):
    service = read_unit(UNITS[role])["Service"]
    assert set(service["CapabilityBoundingSet"].split()) == CAPABILITIES
    # These would hide the host's interfaces, /sys/fs/bpf, /proc/sys/net or /lib/modules.
    for setting in ("PrivateNetwork", "ProtectKernelTunables", "ProtectKernelModules", "PrivateUsers"):
        assert service.get(setting, "no") == "no", setting
    if service.get("ProtectSystem") in ("strict", "full", "yes"):
        assert "/sys/fs/bpf" in service.get("ReadWritePaths", "").split()
    assert service["RuntimeDirectory"] == "pmip6ctl" and service["RuntimeDirectoryPreserve"] == "yes"
    text = (SYSTEMD / UNITS[role]).read_text()
    assert "keeps forwarding" in text or "NOT stop forwarding" in text
    assert re.search(r"ip link set dev \S+ xdp off", text)


@pytest.mark.parametrize("role", ROLES)
def test_unit_waits_for_ready_watches_the_loop_and_filters_system_calls(role):
    service = read_unit(UNITS[role])["Service"]
    # the daemon's sd_notify (pmip6ctl/io/sdnotify.py): READY=1, then WATCHDOG=1 from its loop
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    watchdog = re.fullmatch(r"(\d+)s", service["WatchdogSec"])
    assert watchdog and int(watchdog[1]) >= 10, "the loop's tick is 1 s: leave room for a busy machine"
    assert service["ProtectProc"] == "invisible"
    allowed = service["SystemCallFilter"].split()
    assert allowed[0] == "@system-service" and {"bpf", "perf_event_open"} <= set(allowed[1:])
    assert not any(name.startswith("~") for name in allowed), "an allow list, not a deny list"
    assert service["SystemCallErrorNumber"] == "EPERM"


def test_bpffs_unit_mounts_bpf_at_sys_fs_bpf_only_when_missing():
    unit = read_unit(BPFFS_UNIT)
    assert unit["Unit"]["ConditionPathIsMountPoint"] == "!/sys/fs/bpf"
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert Path(argv[0]).name == "mount" and argv[1:3] == ["-t", "bpf"] and argv[-1] == "/sys/fs/bpf"


def test_systemd_analyze_verifies_the_units(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists that ExecStart's program exists: stand in for /opt/pmip6ctl.
    stand_in = tmp_path / "pmip6ctl"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    probe = tmp_path / "pmip6ctl-probe.service"
    probe.write_text(f"[Unit]\nDescription=probe\n\n[Service]\nType=oneshot\nExecStart={stand_in}\n")
    result = subprocess.run([tool, "verify", str(probe)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        reason = " ".join((result.stderr or result.stdout).split())[:300]
        pytest.skip(f"systemd-analyze verify does not work here (a trivial unit fails: {reason})")
    for unit in SYSTEMD.iterdir():
        text = unit.read_text().replace("/opt/pmip6ctl/bin/pmip6ctl", str(stand_in))
        (tmp_path / unit.name).write_text(text)
    names = [BPFFS_UNIT, UNITS["lma"], "pmip6ctl-mag@mag1.service", UNITS["cn"]]
    result = subprocess.run([tool, "verify", *(str(tmp_path / n) for n in names)],
                            capture_output=True, text=True, timeout=60)
    # Warnings (unknown keys, bad values) keep the exit status 0: they must not appear either.
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "pmip6ctl" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


# --- container -----------------------------------------------------------------------------------

def test_containerfile_is_two_stages_on_debian12_with_bcc_and_no_pip_at_run_time():
    text = (DEPLOY / "container" / "Containerfile").read_text()
    assert re.search(r"^ARG BASE=\S*(debian:12|bookworm)", text, re.M)
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2 and stages[0].startswith("${BASE} AS build") and stages[1].startswith("${BASE}\n")
    build, runtime = stages
    for package in ("python3-bpfcc", "python3-click", "python3-pyroute2", "python3-prometheus-client",
                    "iproute2", "ethtool"):
        assert package in runtime
    for tool in ("pip", "setuptools", "venv"):
        assert not re.search(rf"python3-{tool}\b", runtime), tool
    assert "COPY bpf ./bpf" in build                           # package data of the wheel
    assert "ENV BCC_KERNEL_SOURCE=/usr/src/linux-headers-generic" in runtime
    for copy in re.findall(r"^COPY\s+(.+)$", text, re.M):
        if copy.startswith("--from="):
            continue
        *sources, _destination = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    ignore = (DEPLOY / "container" / "Containerfile.dockerignore").read_text().split()
    for needed in ("!pyproject.toml", "!README.md", "!pmip6ctl/", "!bpf/", "!deploy/examples/"):
        assert needed in ignore
