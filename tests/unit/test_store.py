"""The node's SQLite store (io/store.py) and what sits between it and a
node core (daemon/persist.py), issue 14: incremental writes, a PBA only
after the commit that holds its binding, restart, migration of the old
JSON state file. Real SQLite files in tmp_path; the node cores are real."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from ipaddress import IPv4Address

import pytest

from protocol_helpers import LMA, MAG1, MN1, MN2, T0, carry, exchange, make_lma, make_mag, of_type, pbu
from pmip6ctl import statefile
from pmip6ctl.daemon.persist import Persistence, Table
from pmip6ctl.io.store import SCHEMA_VERSION, Store, StoreError
from pmip6ctl.protocol.binding_cache import BindingCacheEntry
from pmip6ctl.protocol.binding_update_list import BindingState, BindingUpdateListEntry
from pmip6ctl.protocol.lma import InstallBinding, LmaNode, LmaNodePolicy
from pmip6ctl.transport import Send
from pmip6ctl.wire import BindingAck

from test_node_lma import empty_lma


def lma_tables(node: LmaNode) -> list[Table]:
    """What daemon/lma.py keeps (persisted_tables)."""
    return [Table("binding", ("bindings",), node.cache.changed, node.cache.bindings.get)]


def started(path, node: LmaNode | None = None) -> tuple[LmaNode, Persistence]:
    """An LMA as the daemon starts it: the store opened, the node restored
    from it, its changes forgotten (what restore put back is stored)."""
    node = node or empty_lma()
    persistence = Persistence(Store(path), lma_tables(node))
    entries = [statefile.from_jsonable(BindingCacheEntry, e) for e in persistence.load()["bindings"]]
    node.restore(entries, T0)
    persistence.forget_changes()
    return node, persistence


def receive(node: LmaNode, persistence: Persistence, message, now: float = T0) -> tuple[list, list]:
    """(what the daemon carries out at once, what waits for the commit)."""
    actions = node.receive(*carry(Send(message, MAG1, LMA)), now)
    scheduled = []
    now_actions = persistence.admit(actions, lambda: scheduled.append(1))
    held = actions[len(now_actions):]
    assert len(scheduled) == (1 if held else 0)
    return now_actions, held


def pbas(actions) -> list[BindingAck]:
    return [a.message for a in of_type(actions, Send) if isinstance(a.message, BindingAck)]


def stored(path) -> dict[str, dict]:
    """The bindings as another process would read them (a new connection)."""
    with sqlite3.connect(path) as db:
        return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM records WHERE kind = 'binding'")}


# --- the file -------------------------------------------------------------------------------------------
def test_the_store_is_private_in_wal_mode_and_keeps_rows_across_a_reopen(tmp_path):
    path = tmp_path / "lma1.db"
    store = Store(path)
    store.write([("binding", "a", '{"x": 1}'), ("binding", "b", '{"x": 2}')])
    store.write([("binding", "b", '{"x": 3}')], deletes=[("binding", "a")])
    store.close()
    assert path.stat().st_mode & 0o777 == 0o600
    again = Store(path)
    assert list(again.rows("binding")) == [("b", '{"x": 3}')]
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again.meta("schema") == str(SCHEMA_VERSION)


def test_a_store_of_another_schema_is_refused_in_one_line(tmp_path):
    path = tmp_path / "lma1.db"
    Store(path).write([], meta={"schema": "99"})
    with pytest.raises(StoreError, match=r"has schema 99; this pmip6ctl reads 1$"):
        Store(path)


def test_a_failed_write_keeps_nothing_of_its_transaction(tmp_path):
    store = Store(tmp_path / "lma1.db")
    store.write([("binding", "a", "1")])
    with pytest.raises(StoreError):
        store.write([("binding", "b", "2"), ("binding", None, "3")])     # NOT NULL fails: all of it goes
    assert list(store.rows("binding")) == [("a", "1")]


# --- incremental writes ------------------------------------------------------------------------------
def test_each_change_writes_its_own_row_and_no_other(tmp_path):
    node, persistence = started(tmp_path / "lma1.db")
    for i in range(50):
        node.receive(*carry(Send(pbu(f"mn{i}@example.org", T0), MAG1, LMA)), T0)
    assert persistence.flush() == 50 and len(stored(tmp_path / "lma1.db")) == 50
    # a refresh of one MN, a PBU refused (old Timestamp), a deregistration: two rows
    node.receive(*carry(Send(pbu("mn1@example.org", T0 + 1, sequence=2), MAG1, LMA)), T0 + 1)
    node.receive(*carry(Send(pbu("mn2@example.org", T0 + 1, timestamp=T0 - 1, sequence=2), MAG1, LMA)), T0 + 1)
    node.receive(*carry(Send(pbu("mn3@example.org", T0 + 1, lifetime=0, sequence=2), MAG1, LMA)), T0 + 1)
    assert persistence.flush() == 2            # a refused PBU (a forged one, say) writes nothing
    rows = stored(tmp_path / "lma1.db")
    assert len(rows) == 49 and "mn3@example.org" not in rows
    assert rows["mn1@example.org"]["expires"] == T0 + 1 + 3600
    assert persistence.flush() == 0            # nothing changed since


def test_expiry_deletes_the_row(tmp_path):
    node, persistence = started(tmp_path / "lma1.db")
    node.receive(*carry(Send(pbu(MN1, T0, lifetime=40), MAG1, LMA)), T0)
    persistence.flush()
    node.on_timer(T0 + 41)
    assert persistence.flush() == 1 and stored(tmp_path / "lma1.db") == {}


# --- durability: the PBA waits for its commit ------------------------------------------------------
def test_the_pba_is_held_until_its_binding_is_committed(tmp_path):
    path = tmp_path / "lma1.db"
    node, persistence = started(path)
    now_actions, held = receive(node, persistence, pbu(MN1, T0))
    # the map write goes at once (a crash before the commit leaves an entry the restart reconciles away) ...
    assert of_type(now_actions, InstallBinding) and pbas(now_actions) == []
    # ... the PBA waits: a crash now loses the binding, but nobody was told of it
    assert [m.status for m in pbas(held)] == [0]
    assert stored(path) == {}
    released, unsent, error = persistence.commit()
    assert error is None and unsent == [] and [m.status for m in pbas(released)] == [0]
    assert set(stored(path)) == {MN1}          # on disk before the PBA is handed out


def test_a_crash_between_the_commit_and_the_pba_loses_no_binding(tmp_path):
    path = tmp_path / "lma1.db"
    node, persistence = started(path)
    receive(node, persistence, pbu(MN1, T0, ipv4=IPv4Address(0)))
    persistence.commit()                        # committed; the process dies before the PBA leaves
    restarted, _ = started(path)
    assert restarted.bindings[MN1] == node.bindings[MN1]
    # the MAG retransmits (new sequence, new Timestamp): the same binding is refreshed, not a new one
    actions = restarted.receive(*carry(Send(pbu(MN1, T0 + 1, sequence=2, ipv4=IPv4Address(0)), MAG1, LMA)), T0 + 1)
    assert [m.status for m in pbas(actions)] == [0]
    assert (restarted.bindings[MN1].hnp, restarted.bindings[MN1].ipv4_hoa) == \
           (node.bindings[MN1].hnp, node.bindings[MN1].ipv4_hoa)


def test_one_commit_takes_a_whole_burst_and_later_answers_wait_behind_it(tmp_path):
    path = tmp_path / "lma1.db"
    node, persistence = started(path)
    scheduled = []
    released = []
    for i, mn in enumerate((MN1, MN2, "mn3@example.org")):
        actions = node.receive(*carry(Send(pbu(mn, T0), MAG1, LMA)), T0)
        released += persistence.admit(actions, lambda: scheduled.append(1))
    assert len(scheduled) == 1 and pbas(released) == []
    held, unsent, error = persistence.commit()
    assert len(pbas(held)) == 3 and persistence.commits == 1 and len(stored(path)) == 3


def test_a_failing_store_sends_no_pba_and_writes_the_binding_with_the_next_commit(tmp_path):
    path = tmp_path / "lma1.db"
    node, persistence = started(path)
    persistence.store._db.execute("PRAGMA query_only = ON")      # SQLite refuses every write from now on
    receive(node, persistence, pbu(MN1, T0))
    held, unsent, error = persistence.commit()
    assert isinstance(error, StoreError) and "readonly" in str(error)
    assert pbas(held) == [] and [s.message.status for s in unsent] == [0]
    assert stored(path) == {}
    persistence.store._db.execute("PRAGMA query_only = OFF")     # the disk is back: the MAG retransmits
    receive(node, persistence, pbu(MN1, T0 + 1, sequence=2))
    held, unsent, error = persistence.commit()
    assert error is None and [m.status for m in pbas(held)] == [0] and set(stored(path)) == {MN1}


# --- migration ------------------------------------------------------------------------------------------
def test_the_json_state_file_is_read_once_then_removed(tmp_path):
    old = empty_lma()
    for mn in (MN1, MN2):
        old.receive(*carry(Send(pbu(mn, T0), MAG1, LMA)), T0)
    state_file = tmp_path / "lma1.state.json"
    state_file.write_text(json.dumps(statefile.to_jsonable({   # as pmip6ctl before the store wrote it
        "role": "lma", "node": "lma1", "replay": {str(MAG1): 123}, "bindings": list(old.bindings.values())})))
    store = Store(tmp_path / "lma1.db")
    node = empty_lma()
    persistence = Persistence(store, lma_tables(node))
    assert persistence.migrate(state_file) == 3 and not state_file.exists()
    assert store.meta("migrated_from") == str(state_file)
    restarted, _ = started(tmp_path / "lma1.db")
    assert restarted.bindings == old.bindings
    assert persistence.load()["replay"] == {str(MAG1): 123}
    # a store that has records never takes a state file again
    state_file.write_text('{"bindings": []}')
    assert persistence.migrate(state_file) == 0 and state_file.exists()


# --- the operator's view -----------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 CLI is not installed (./dev installs it)")
def test_an_operator_reads_the_bindings_with_the_sqlite3_cli(tmp_path):
    path = tmp_path / "lma1.db"
    node, persistence = started(path)
    node.receive(*carry(Send(pbu(MN1, T0, ipv4=IPv4Address(0)), MAG1, LMA)), T0)
    persistence.flush()
    out = subprocess.run(["sqlite3", "-readonly", "-separator", " ", str(path),
                          "SELECT mn_id, hnp, ipv4_hoa, mag, lifetime FROM bindings"],
                         capture_output=True, text=True, check=True).stdout.split()
    entry = node.bindings[MN1]
    assert out == [MN1, str(entry.hnp), str(entry.ipv4_hoa), str(MAG1), "3600"]


def test_every_view_reads(tmp_path):
    store = Store(tmp_path / "mag1.db")
    for view in ("bindings", "binding_update_list", "ro_initiated", "ro_answered", "replay"):
        assert store._db.execute(f"SELECT * FROM {view}").fetchall() == []


def test_lma_policy_of_the_unit_tests_is_the_daemons_shape():
    # persisted_tables of daemon/lma.py keeps what this file's lma_tables keeps
    from pmip6ctl.daemon.lma import LmaDaemon
    node = LmaNode(LmaNodePolicy(binding_cache=empty_lma().policy.binding_cache))
    daemon = LmaDaemon.__new__(LmaDaemon)
    daemon.node = node
    [table] = daemon.persisted_tables()
    assert (table.kind, table.where, table.changed is node.cache.changed) == ("binding", ("bindings",), True)


def test_the_mags_binding_update_list_round_trips_through_the_store(tmp_path):
    """daemon/mag.py keeps each MN's entry (kind "mn"): registered, with its
    timers, as the binding update list holds it."""
    lma, bul = make_lma(), make_mag()
    exchange(bul, lma, bul.attach(MN1, "acc1", T0, mac="02:00:00:00:00:01"))
    exchange(bul, lma, bul.attach(MN2, "acc1", T0))
    table = Table("mn", ("entries",), bul.changed, bul.entries.get)
    assert Persistence(Store(tmp_path / "mag1.db"), [table]).flush() == 2
    saved = Persistence(Store(tmp_path / "mag1.db"), [table]).load()["entries"]
    entries = {e.mn_id: e for e in (statefile.from_jsonable(BindingUpdateListEntry, s) for s in saved)}
    assert entries == bul.entries and entries[MN1].state is BindingState.REGISTERED
    restarted = make_mag()
    restarted.restore(list(entries.values()))
    assert restarted.next_deadline() == bul.next_deadline()     # its refresh timers resume


def test_a_local_route_round_trips_through_the_store(tmp_path):
    """daemon/mag.py keeps the initiator's established pairs (ro_tables): a
    local route (RFC 6705) has no peer, and comes back as a local route."""
    from protocol_helpers import FIRST_HNP, MN, MN_B, MNS_AT_MAG1, initiator_policy, mag_node, seeded
    from test_local_routing import LOCAL, local_route, network
    from pmip6ctl.daemon.ro_entries import ro_tables, saved_ro
    from pmip6ctl.protocol.ro import LocalRouteInstalled, Phase
    net = network()
    local_route(net)
    tables = ro_tables(initiator=net.initiator, responder=net.peer.responder)
    assert Persistence(Store(tmp_path / "mag1.db"), tables).flush() >= 1
    loaded = saved_ro(Persistence(Store(tmp_path / "mag1.db"), tables).load()["ro"])
    (saved,) = loaded["initiator"]
    assert saved.local and saved.peer is None and saved.pair == LOCAL
    restarted = mag_node(initiator=initiator_policy(), attached=MNS_AT_MAG1, random=seeded(5))
    actions = restarted.restore_ro(loaded, net.now + 1)
    assert [a.pair for a in actions if isinstance(a, LocalRouteInstalled)] == [LOCAL]
    assert restarted.initiator.attempts[LOCAL].phase is Phase.LOCAL
    assert (MN, MN_B, FIRST_HNP) == (LOCAL.local, LOCAL.remote, restarted.initiator.attempts[LOCAL].mn_prefix)
