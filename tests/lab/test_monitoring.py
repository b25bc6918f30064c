"""A real Prometheus scraping the lab's daemons over the management link,
and every expression of the Grafana dashboard evaluated against it: each
must return at least one series once the lab has seen traffic and an RO
set-up."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from .conftest import established, metrics, ping, wait_for

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "dashboards" / "pmip6ctl.json"
PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api(port: int, path: str, **params) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.load(reply)
    assert body["status"] == "success", body
    return body["data"]


def dashboard_expressions() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    found = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((panel.get("title", "?"), target["expr"]))
            walk(panel.get("panels", []))
    walk(board["panels"])
    return found


@pytest.fixture(scope="module")
def prometheus(lab, tmp_path_factory):
    if PROMETHEUS is None:
        pytest.fail("the prometheus binary is missing: ./dev setup installs it")
    directory = tmp_path_factory.mktemp("prometheus")
    config = directory / "prometheus.yml"
    rules = ROOT / "deploy" / "prometheus" / "rules.yml"
    config.write_text(lab.prometheus_config(scrape_interval="1s")
                      + f"rule_files:\n  - {rules}\n")
    subprocess.run(["promtool", "check", "config", str(config)], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=(directory / "prometheus.log").open("w"))
    try:
        wait_for(lambda: _ready(port), timeout=30, what="prometheus to start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _ready(port: int) -> bool:
    try:
        api(port, "targets")
        return True
    except OSError:
        return False


def test_prometheus_scrapes_every_lab_daemon(lab, prometheus):
    def all_up():
        targets = api(prometheus, "targets")["activeTargets"]
        return len(targets) == len(lab.metrics_targets()) and all(t["health"] == "up" for t in targets) and targets
    targets = wait_for(all_up, timeout=30, what="every lab target to be up")
    assert {t["labels"]["job"] for t in targets} == {"pmip6-lma", "pmip6-mag", "pmip6-cn"}


def test_every_dashboard_expression_returns_data_after_traffic_and_ro(lab, prometheus):
    mn1, mn2 = lab.mns["mn1"]["ipv6"], lab.mns["mn2"]["ipv6"]
    for node in ("mag1", "mag2"):
        lab.client(node).call("ro_settings", trigger_packets=0, mode="rr", lifetime=420)
    assert ping(lab, "mn1", mn2, count=20, interval=0.02) == 20          # the LMA path
    lab.client("mag1").call("ro_start", mn=mn1, cn=mn2)
    wait_for(lambda: established(lab, "mag1", mn1, mn2), what="RO")
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:                                   # optimized traffic over a few scrapes
        ping(lab, "mn1", mn2, count=20, interval=0.02)
    time.sleep(3)

    empty = {}
    for title, expr in dashboard_expressions():
        query = re.sub(r"\$\{?node\}?", ".*", expr).replace("$__rate_interval", "1m")
        result = api(prometheus, "query", query=query)["result"]
        if not result:
            empty[title] = expr
    lab.client("mag1").call("ro_stop", mn=mn1, cn=mn2)
    assert len(dashboard_expressions()) > 10
    assert empty == {}


def test_the_alerting_and_recording_rules_load_and_evaluate(prometheus):
    def rules():
        found = [rule for group in api(prometheus, "rules")["groups"] for rule in group["rules"]]
        return found if found and all(r["health"] != "unknown" for r in found) else None
    evaluated = wait_for(rules, timeout=20, what="the rules' first evaluation")
    assert [(r["name"], r.get("lastError")) for r in evaluated if r["health"] != "ok"] == []


def test_status_and_metrics_show_each_bounded_table_next_to_its_capacity(lab):
    """Issue 13: each table others fill, on the running daemons, in `status`
    (held, capacity, config key) and as pmip6_table_entries next to
    pmip6_table_capacity; the flows XDP counts toward the RO trigger in
    status with the map's own capacity."""
    from pmip6ctl.config import DataplaneSection, RoSection
    mn2 = lab.mns["mn2"]["ipv6"]
    # XDP counts flows only with a trigger: one no ping here reaches
    was = lab.client("mag1").call("ro_settings")["trigger_packets"]
    lab.client("mag1").call("ro_settings", trigger_packets=100_000)
    try:
        assert ping(lab, "mn1", mn2, count=5, interval=0.02) == 5
    finally:
        lab.client("mag1").call("ro_settings", trigger_packets=was)
    expected = {"mag1": {"ro_attempts", "ro_remembered_failures", "ro_replay", "answer_prefixes", "flows"},
                "lma": {"peer_queries", "peer_answers"},
                "cn": {"ro_bindings", "ro_replay", "answer_prefixes"}}
    for node, tables in expected.items():
        limits = lab.client(node).call("status")["limits"]
        assert tables <= set(limits), (node, sorted(limits))
        text = metrics(lab, node)
        for table, row in limits.items():
            if table == "flows":
                continue                            # pmip6_bpf_map_entries{map="flows"} has it
            assert re.search(rf'pmip6_table_capacity{{node="{node}",table="{table}"}} {row["capacity"]}\.0', text)
            assert f'pmip6_table_entries{{node="{node}",table="{table}"}}' in text
    mag1 = lab.client("mag1").call("status")["limits"]
    assert mag1["ro_attempts"]["capacity"] == RoSection().max_attempts
    assert mag1["ro_replay"]["setting"] == "ro.max_replay_entries"
    # the ping's flows are in the LRU map XDP keeps, whose size is the config's
    assert mag1["flows"]["capacity"] == DataplaneSection().max_flows and mag1["flows"]["held"] >= 1
