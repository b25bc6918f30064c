"""The metrics collector: per-CPU counters summed exactly at scrape time,
under the names DESIGN §6 fixes, with low-cardinality labels."""

from prometheus_client import generate_latest

from pmip6ctl.daemon.intake import EventIntake
from pmip6ctl.dataplane.tables import Counter, sum_counters
from pmip6ctl.metrics import DataplaneCollector, Metrics


def test_per_cpu_counters_are_summed_exactly():
    rows = [[(1, 100), (2, 200), (0, 0)], [(2**40, 2**50), (2**40, 1)], []]
    assert sum_counters(rows) == [(3, 300), (2**41, 2**50 + 1), (0, 0)]


class FakeTables:
    def __init__(self):
        self.scrapes = 0

    def counters(self):
        self.scrapes += 1
        return [Counter("mag_access", "redirect", "fwd_encap_ro", 10 * self.scrapes, 1500 * self.scrapes),
                Counter("mag_access", "drop", "drop_malformed", 1, 60)]

    def map_pressure(self):
        return {"ro_table": (3, 65536)}

    def event_counts(self):
        return {("mag_transport", "punt"): 5, ("mag_transport", "over_budget"): 2}


def test_collector_reads_the_data_plane_at_every_scrape():
    tables = FakeTables()
    metrics = Metrics("mag1", "mag")
    intake = EventIntake(lambda event: None)
    intake.dropped, intake.lost = 4, 1
    metrics.add_collector(DataplaneCollector(
        "mag1", lambda: tables, lambda: [("pmip6_bindings", "Bindings", {"kind": "pmip"}, 2)], intake=intake))
    metrics.count_message("pbu", "out")

    first = generate_latest(metrics.registry).decode()
    second = generate_latest(metrics.registry).decode()

    assert 'pmip6_dataplane_packets_total{node="mag1",program="mag_access",reason="fwd_encap_ro",verdict="redirect"} 10.0' in first
    assert 'pmip6_dataplane_packets_total{node="mag1",program="mag_access",reason="fwd_encap_ro",verdict="redirect"} 20.0' in second
    assert 'pmip6_dataplane_bytes_total{node="mag1",program="mag_access",reason="drop_malformed",verdict="drop"} 60.0' in second
    assert 'pmip6_bpf_map_entries{map="ro_table",node="mag1"} 3.0' in first
    assert 'pmip6_bpf_map_capacity{map="ro_table",node="mag1"} 65536.0' in first
    assert 'pmip6_bindings{kind="pmip",node="mag1"} 2.0' in first
    assert 'pmip6_dataplane_events_total{kind="over_budget",node="mag1",program="mag_transport"} 2.0' in first
    assert 'pmip6_dataplane_events_dropped_total{cause="queue_full",node="mag1"} 4.0' in first
    assert 'pmip6_dataplane_events_dropped_total{cause="perf_buffer_lost",node="mag1"} 1.0' in first
    assert 'pmip6_signaling_messages_total{direction="out",node="mag1",result="ok",type="pbu"} 1.0' in first
    assert 'pmip6_daemon_info{node="mag1",role="mag",version=' in first


def test_every_exported_name_has_the_pmip6_prefix_or_is_standard():
    tables = FakeTables()
    metrics = Metrics("lma", "lma")
    metrics.add_collector(DataplaneCollector("lma", lambda: tables, lambda: [], intake=EventIntake(print)))
    names = {line.split("{")[0].split(" ")[0] for line in generate_latest(metrics.registry).decode().splitlines()
             if line and not line.startswith("#")}
    assert all(n.startswith(("pmip6_", "process_")) for n in names), names


def test_mobile_node_states_are_all_there_even_at_zero():
    from types import SimpleNamespace

    from pmip6ctl.daemon.mag import mobile_node_states
    from pmip6ctl.protocol.binding_update_list import BindingState

    assert mobile_node_states([]) == {"registering": 0, "registered": 0, "deregistering": 0, "failed": 0}
    entries = [SimpleNamespace(state=BindingState.REGISTERED)] * 2 + [SimpleNamespace(state=BindingState.FAILED)]
    assert mobile_node_states(entries) == {"registering": 0, "registered": 2, "deregistering": 0, "failed": 1}
