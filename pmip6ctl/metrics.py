"""Prometheus metrics of one daemon (names in DESIGN §6).

Data-plane counters are per-CPU in BPF; the collector sums them at scrape
time, so a scrape always sees the kernel's current totals (no polling
thread that could lag). Labels stay low-cardinality: never one per MN."""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from typing import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import __version__, logthrottle


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):          # noqa: A002 (the stdlib's name)
        pass


def _server_class(family: int) -> type:
    class Server(ThreadingMixIn, WSGIServer):
        address_family = family
        daemon_threads = True
        allow_reuse_address = True

        def server_bind(self):
            socketserver.TCPServer.server_bind(self)       # HTTPServer's would ask reverse DNS
            self.server_name, self.server_port = self.server_address[:2]
            self.setup_environ()
    return Server

log = logging.getLogger("pmip6ctl.metrics")

class _Registry(CollectorRegistry):
    """No *_created series: one more series per counter and histogram child,
    which no rule or panel reads (docs/metrics.md). Left out at collection,
    which every client version allows (disable_created_metrics() is 0.17's;
    Debian 12, the container image's, has 0.16)."""

    def collect(self):
        for metric in super().collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric

# RO set-up spans a few milliseconds in one domain to seconds when RR retries.
# A commit with fsync: tens of microseconds on tmpfs to tens of milliseconds on a busy disk.
STORE_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)
RO_SETUP_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class DataplaneCollector:
    """Reads the data plane at scrape time: packets/bytes by program,
    verdict and reason; map entries and capacity; the daemon's own gauges."""

    def __init__(self, node: str, tables_provider: Callable[[], object | None],
                 gauges: Callable[[], Iterable[tuple[str, str, dict, float]]], intake=None,
                 bounded: Callable[[], Iterable] | None = None):
        self.node = node
        self.tables_provider = tables_provider
        self.gauges = gauges
        self.intake = intake
        self.bounded = bounded        # the node core's bounded tables (protocol/limits.py Bounded)

    def collect(self):
        tables = self.tables_provider()
        if tables is not None:
            packets = CounterMetricFamily("pmip6_dataplane_packets", "Packets leaving an XDP program, by verdict and reason",
                                          labels=["node", "program", "verdict", "reason"])
            octets = CounterMetricFamily("pmip6_dataplane_bytes", "Bytes leaving an XDP program, by verdict and reason",
                                         labels=["node", "program", "verdict", "reason"])
            for c in tables.counters():
                labels = [self.node, c.program, c.verdict, c.reason]
                packets.add_metric(labels, c.packets)
                octets.add_metric(labels, c.bytes)
            yield packets
            yield octets
            entries = GaugeMetricFamily("pmip6_bpf_map_entries", "Entries in a BPF map", labels=["node", "map"])
            capacity = GaugeMetricFamily("pmip6_bpf_map_capacity", "Capacity of a BPF map", labels=["node", "map"])
            for name, (used, size) in tables.map_pressure().items():
                entries.add_metric([self.node, name], used)
                capacity.add_metric([self.node, name], size)
            yield entries
            yield capacity
            events = CounterMetricFamily("pmip6_dataplane_events", "Notices from the XDP programs to the daemon, "
                                         "by kind (over_budget: refused by the per-CPU punt budget)",
                                         labels=["node", "program", "kind"])
            for (program, kind), n in tables.event_counts().items():
                events.add_metric([self.node, program, kind], n)
            yield events
        if self.intake is not None:
            dropped = CounterMetricFamily("pmip6_dataplane_events_dropped", "Data-plane events that never reached "
                                          "the daemon's node: queue_full, or lost in the perf buffer",
                                          labels=["node", "cause"])
            dropped.add_metric([self.node, "queue_full"], self.intake.dropped)
            dropped.add_metric([self.node, "perf_buffer_lost"], self.intake.lost)
            yield dropped
        if logthrottle.installed is not None:
            suppressed = CounterMetricFamily("pmip6_log_lines_suppressed", "Log lines over their kind's rate "
                                             "(10 at once, then 1 a second), not written", labels=["node"])
            suppressed.add_metric([self.node], logthrottle.installed.suppressed_total)
            yield suppressed
        if self.bounded is not None:
            yield from self._bounded()
        families: dict[str, GaugeMetricFamily] = {}
        for name, help_text, labels, value in self.gauges():
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, help_text, labels=["node", *labels])
            family.add_metric([self.node, *labels.values()], value)
        yield from families.values()


    def _bounded(self):
        """Each table others fill (issue 13): its entries next to its
        capacity, and what its limit pushed out or refused, by reason."""
        held = GaugeMetricFamily("pmip6_table_entries", "Entries in a table others fill", labels=["node", "table"])
        capacity = GaugeMetricFamily("pmip6_table_capacity", "Its limit (the config key in status)",
                                     labels=["node", "table"])
        pushed = CounterMetricFamily("pmip6_table_pushed_out", "Entries that went to make room at the table's limit",
                                     labels=["node", "table", "reason"])
        refused = CounterMetricFamily("pmip6_table_refused", "New entries not taken at the table's limit",
                                      labels=["node", "table", "reason"])
        for b in self.bounded():
            held.add_metric([self.node, b.table], b.held)
            capacity.add_metric([self.node, b.table], b.capacity)
            for reason, n in b.pushed_out.items():
                pushed.add_metric([self.node, b.table, reason], n)
            for reason, n in b.refused.items():
                refused.add_metric([self.node, b.table, reason], n)
        yield from (held, capacity, pushed, refused)


class Metrics:
    def __init__(self, node: str, role: str):
        self.node = node
        self.registry = _Registry()
        self._signaling_children: dict[tuple[str, str, str], object] = {}
        self.signaling = Counter(
            "pmip6_signaling_messages", "Mobility messages by type, direction and result",
            ["node", "type", "direction", "result"], registry=self.registry)
        self.ro_setup = Histogram(
            "pmip6_ro_setup_seconds", "Time from the RO trigger to the RO entry being installed",
            ["node", "mode"], buckets=RO_SETUP_BUCKETS, registry=self.registry)
        self.ro_attempts = Counter(
            "pmip6_ro_attempts", "Route-optimization attempts by mode and outcome",
            ["node", "mode", "result"], registry=self.registry)
        self.ro_removed = Counter(
            "pmip6_ro_removed", "RO pairs ended here (their entry leaves the data plane: LMA path), by role and reason",
            ["node", "role", "reason"], registry=self.registry)
        self.local_routes = Counter(
            "pmip6_local_routes", "Local routes (RFC 6705: both MNs at this MAG) installed, refreshed and removed, "
            "by event and reason", ["node", "event", "reason"], registry=self.registry)
        self.liveness = Counter(
            "pmip6_heartbeat_peer_events", "Peers declared dead (missed heartbeats) or alive again (RFC 5847), "
            "by peer kind", ["node", "kind", "event"], registry=self.registry)
        self.tunnels_refused = Counter(
            "pmip6_tunnels_refused", "Tunnels refused: toward a remote end in use as another kind of peer",
            ["node"], registry=self.registry)
        self.reloads = Counter(
            "pmip6_config_reloads", "Config reloads (SIGHUP, pmip6ctl reload) by result",
            ["node", "result"], registry=self.registry)
        self.store_commits = Counter(
            "pmip6_store_commits", "Transactions written to the node's store (one per event-loop turn with changes)",
            ["node"], registry=self.registry)
        self.store_rows = Counter(
            "pmip6_store_rows_written", "Records written or deleted in the node's store",
            ["node"], registry=self.registry)
        self.store_errors = Counter(
            "pmip6_store_errors", "Store commits that failed: the answers they held back were not sent",
            ["node"], registry=self.registry)
        self.handover_held = Counter(
            "pmip6_handover_held", "Uplink packets a MAG held while the MN's PBU was in flight (handover buffer)",
            ["node"], registry=self.registry)
        self.handover_released = Counter(
            "pmip6_handover_released", "Held uplink packets released into the MN's tunnel once the PBA came",
            ["node"], registry=self.registry)
        self.handover_dropped = Counter(
            "pmip6_handover_dropped", "Uplink packets of unknown sources the handover buffer dropped, by reason",
            ["node", "reason"], registry=self.registry)
        self.downlink_held = Counter(
            "pmip6_downlink_held", "Packets for an MN between two MAGs the LMA held (downlink hold)",
            ["node"], registry=self.registry)
        self.downlink_released = Counter(
            "pmip6_downlink_released", "Held downlink packets released into the tunnel to the MN's new MAG",
            ["node"], registry=self.registry)
        self.downlink_dropped = Counter(
            "pmip6_downlink_dropped", "Packets XDP handed to the LMA's downlink hold that it dropped, by reason",
            ["node", "reason"], registry=self.registry)
        self.store_commit_seconds = Histogram(
            "pmip6_store_commit_seconds", "Time to write and commit one transaction to the store",
            ["node"], buckets=STORE_BUCKETS, registry=self.registry)
        Info("pmip6_daemon", "pmip6ctl daemon", registry=self.registry).info(
            {"version": __version__, "role": role, "node": node})
        ProcessCollector(registry=self.registry)     # process_cpu_seconds_total, resident memory, ...

    def count_message(self, kind: str, direction: str, result: str = "ok") -> None:
        # labels() costs more than the increment: each series' child is looked up once
        key = (kind, direction, result)
        child = self._signaling_children.get(key)
        if child is None:
            child = self._signaling_children[key] = self.signaling.labels(self.node, kind, direction, result)
        child.inc()

    def add_collector(self, collector) -> None:
        self.registry.register(collector)

    def serve(self, host: str, port: int, health=None):
        """/metrics (and /healthz, when given a daemon/health.py LoopHealth)
        in a thread of its own; returns the server (shutdown() ends it). Not
        start_http_server: its HTTPServer looks the address up in reverse
        DNS (socket.getfqdn), which held a daemon's start for 5 s where no
        DNS answers."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = make_server(host, port, app(self.registry, health), _server_class(family),
                             handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        where = f"[{host}]:{server.server_port}" if ":" in host else f"{host}:{server.server_port}"
        log.info("metrics on http://%s/metrics%s", where, ", health on /healthz" if health is not None else "")
        return server


def app(registry, health=None):
    """The WSGI application: /healthz to health.check() (200 or 503, JSON),
    anything else to the Prometheus exposition."""
    metrics = make_wsgi_app(registry)

    def application(environ, start_response):
        if health is None or environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)
        ok, body = health.check()
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                        ("Cache-Control", "no-store")])
        return [data]
    return application
