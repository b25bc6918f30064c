"""Between a node core and its store (io/store.py): which rows a change
touched, when they are written, and what waits for the commit.

Each core keeps a set of the keys it changed (`changed`: the binding
cache's MN-IDs, the binding update list's, the RO pairs of either role);
`flush` turns them into rows (the record as the core holds it now, or a
delete when it is gone) and writes them in one transaction. The daemon
flushes once per event-loop turn, after everything that arrived in that
turn, and only then sends what the changes answered (daemon/base.py
`apply`): a PBA or BA leaves only once its binding is committed.

A table's records keep the shape the JSON state file had (`where`: their
place in it), so that one restore path reads both, and the migration from
the old file is that file's records written as rows.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import statefile
from ..io.store import Store, StoreError
from ..protocol.node import StateChanged
from ..transport import Send, SendHomePath

log = logging.getLogger("pmip6ctl.store")


def key_text(key: Any) -> str:
    """A record's key as the store's `key` column: an MN-ID, or an RO pair
    as "local remote"."""
    local = getattr(key, "local", None)
    return f"{local} {key.remote}" if local is not None else str(key)


def saved_key(value: dict) -> str:
    """The key of a record as to_jsonable wrote it (the old state file's)."""
    if "mn_id" in value:
        return value["mn_id"]
    return f"{value['pair']['local']} {value['pair']['remote']}"


@dataclass
class Table:
    """One kind of record a core keeps."""
    kind: str                                    # the store's `kind` column
    where: tuple[str, ...]                       # its place in the node's saved state
    changed: set                                 # the core's keys changed since the last flush
    record: Callable[[Any], Any | None]          # key -> the record to keep now (None: delete it)


class Persistence:
    def __init__(self, store: Store, tables: list[Table], guard=None):
        self.store = store
        self.tables = tables
        self.guard = guard                     # its newest request Timestamp per peer is kept too
        self._replay_written: dict[str, int] = {}
        self._held: list | None = None         # actions waiting for the next commit
        self.commits = 0
        self.last_rows = 0                     # of the last flush (0: it had nothing to write)
        self.last_commit_seconds = 0.0

    # --- start ----------------------------------------------------------------------------
    def migrate(self, state_file: Path) -> int:
        """Read the JSON state file of an older pmip6ctl once into an empty
        store, then remove it; the number of records taken over."""
        state = statefile.load(state_file)
        if state is None or not self.store.empty:
            return 0
        puts = [("replay", peer, json.dumps(stamp)) for peer, stamp in (state.get("replay") or {}).items()]
        for table in self.tables:
            puts += [(table.kind, saved_key(v), json.dumps(v)) for v in _at(state, table.where)]
        self.store.write(puts, meta={"migrated_from": str(state_file)})
        state_file.unlink()
        log.info("took %d records over from %s into %s, and removed it", len(puts), state_file, self.store.path)
        return len(puts)

    def load(self) -> dict:
        """The node's saved state, in the shape its restore() takes."""
        state: dict = {}
        for table in self.tables:
            _put(state, table.where, [json.loads(v) for _, v in self.store.rows(table.kind)])
        self._replay_written = {peer: json.loads(v) for peer, v in self.store.rows("replay")}
        state["replay"] = dict(self._replay_written)
        return state

    def forget_changes(self) -> None:
        """After a restore: what it put back is what the store holds."""
        for table in self.tables:
            table.changed.clear()

    # --- each loop turn ----------------------------------------------------------------------
    def admit(self, actions: list, schedule: Callable[[], None]) -> list:
        """The actions to carry out now. From a StateChanged on, they wait
        for commit() (schedule() asks for it, once): everything a loop
        turn changes is one transaction, and only then do the answers
        leave, so a PBA or BA is never sent for a binding a kill -9 could
        lose. While a commit is pending, later actions wait behind it, in
        order. A change that holds nothing back (a retransmission's state)
        is written by the same turn's commit: the sets of changed keys
        never outgrow one loop turn."""
        if self._held is not None:
            self._held.extend(actions)
            return []
        for i, action in enumerate(actions):
            if isinstance(action, StateChanged):
                self._held = list(actions[i + 1:])
                schedule()
                return actions[:i]
        if self.pending:
            self._held = []
            schedule()
        return actions

    def commit(self) -> tuple[list, list, StoreError | None]:
        """Write what changed; (the held actions to carry out now, the
        messages not sent, the store's error). Every held action came from a change made before
        this commit, so a StateChanged among them needs no commit of its
        own. When the store fails, the messages that would tell of the
        change are left out (the peer retransmits; the change stays marked
        and goes with the next commit)."""
        held, self._held = self._held or [], None
        held = [a for a in held if not isinstance(a, StateChanged)]
        try:
            self.flush()
        except StoreError as exc:
            unsent = [a for a in held if isinstance(a, (Send, SendHomePath))]
            return [a for a in held if not isinstance(a, (Send, SendHomePath))], unsent, exc
        return held, [], None

    @property
    def pending(self) -> bool:
        return any(t.changed for t in self.tables)

    def flush(self) -> int:
        """Write every changed record in one transaction; the rows written.
        When the store fails (StoreError), the changes stay marked, to be
        written by the next flush."""
        self.last_rows = 0
        puts, deletes, taken = [], [], []
        for table in self.tables:
            if not table.changed:
                continue
            keys = list(table.changed)
            table.changed.clear()
            taken.append((table, keys))
            for key in keys:
                record = table.record(key)
                if record is None:
                    deletes.append((table.kind, key_text(key)))
                else:
                    puts.append((table.kind, key_text(key), json.dumps(statefile.to_jsonable(record))))
        replay = self.guard.replay_state() if self.guard is not None else {}
        fresh = {peer: stamp for peer, stamp in replay.items() if self._replay_written.get(peer) != stamp}
        puts += [("replay", peer, json.dumps(stamp)) for peer, stamp in fresh.items()]
        deletes += [("replay", peer) for peer in self._replay_written if peer not in replay]
        if not puts and not deletes:
            return 0
        started = time.perf_counter()
        try:
            self.store.write(puts, deletes)
        except Exception:
            for table, keys in taken:
                table.changed.update(keys)
            raise
        self.last_commit_seconds = time.perf_counter() - started
        self._replay_written = replay
        self.commits += 1
        self.last_rows = len(puts) + len(deletes)
        return self.last_rows


def _at(state: dict, where: tuple[str, ...]) -> list:
    for step in where:
        state = (state or {}).get(step)
    return state or []


def _put(state: dict, where: tuple[str, ...], values: list) -> None:
    for step in where[:-1]:
        state = state.setdefault(step, {})
    state[where[-1]] = values
