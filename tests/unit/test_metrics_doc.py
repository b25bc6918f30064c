"""docs/metrics.md lists every metric a daemon exports, and nothing else: the
names come from the code (the metric names it hands prometheus_client and the
collector) and from a scrape of a daemon's registry, so the list cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from pmip6ctl.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "metrics.md"
SOURCE_NAME = re.compile(r'"(pmip6_[a-z0-9_]+)"')
ROW = re.compile(r"^\| `([a-z0-9_]+)` \| ([a-z() ]+) \|", re.M)


def documented() -> dict[str, str]:
    return {name: kind.strip() for name, kind in ROW.findall(DOC.read_text())}


def in_the_code() -> set[str]:
    """Names as exposed: counters get _total, the Info its _info."""
    names = set()
    for path in (ROOT / "pmip6ctl").rglob("*.py"):
        text = path.read_text()
        for match in SOURCE_NAME.finditer(text):
            name = match[1]
            before = text[max(0, match.start() - 80):match.start()]
            if re.search(r"(Counter|CounterMetricFamily)\(\s*$", before):
                name += "_total"
            elif re.search(r"Info\(\s*$", before):
                name += "_info"
            names.add(name)
    return names


def scraped() -> set[str]:
    metrics = Metrics("mag1", "mag")
    metrics.count_message("pbu", "out")
    text = generate_latest(metrics.registry).decode()
    return set(re.findall(r"^# TYPE (\S+) \S+", text, re.M))      # as exposed: counters with _total


def test_every_exported_metric_is_documented():
    code = in_the_code() | scraped()
    assert {"pmip6_signaling_messages_total", "pmip6_bindings", "pmip6_mobile_nodes", "pmip6_daemon_info",
            "pmip6_ro_setup_seconds", "process_cpu_seconds_total"} <= code     # the reader finds them
    missing = sorted(code - set(documented()))
    assert not missing, f"docs/metrics.md lacks {missing}"


def test_every_documented_metric_is_exported():
    code = in_the_code() | scraped()
    stale = sorted(set(documented()) - code)
    assert not stale, f"docs/metrics.md lists metrics nobody exports: {stale}"


def test_counters_are_documented_as_counters():
    for name, kind in documented().items():
        assert name.endswith("_total") == (kind == "counter"), name


def test_a_scrape_has_no_created_series():
    metrics = Metrics("lma", "lma")
    metrics.count_message("pbu", "in")
    metrics.ro_setup.labels("lma", "quick").observe(0.01)
    metrics.store_commit_seconds.labels("lma").observe(0.001)
    text = generate_latest(metrics.registry).decode()
    assert "pmip6_signaling_messages_total{" in text and "pmip6_ro_setup_seconds_count{" in text
    assert not [line for line in text.splitlines() if "_created" in line.split("{")[0].split(" ")[0]]
