"""A node's state on disk: one SQLite file per node (issue 14), through
Python's sqlite3, in WAL mode.

What a node keeps across a restart (the LMA's bindings, the MAG's binding
update list, the RO pairs of either role, the newest request Timestamp of
each signaling peer) is rows of one table, `records`: a kind, a key within
it, and the record as JSON. A change writes the rows it changed and no
others; the daemon (daemon/persist.py) batches them into one transaction
per event-loop turn and sends a PBA or BA only once the transaction that
holds its binding is committed, so `kill -9` never loses a binding anyone
was told about.

An operator reads it with the sqlite3 CLI, through a view per kind
(docs/operations.md): `sqlite3 -readonly /var/lib/pmip6ctl/lma1.db
'SELECT * FROM bindings'`. The file holds the RO pairs' Kbm: it is readable
by root only, as are its -wal and -shm files (SQLite gives them the mode of
the database file).

This module knows rows, not the protocol: it imports nothing of the cores.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    kind  TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
"""

# One view per kind, with the columns an operator asks about first; `value`
# keeps the whole record.
_VIEWS = {
    "bindings": ("binding", """key AS mn_id, value->>'hnp' AS hnp, value->>'ipv4_hoa' AS ipv4_hoa,
        value->>'proxy_coa' AS mag, value->>'lifetime' AS lifetime,
        datetime(value->>'expires', 'unixepoch') AS expires_utc, value->>'sequence' AS sequence"""),
    "binding_update_list": ("mn", """key AS mn_id, value->>'state' AS state, value->>'link' AS link,
        value->>'hnp' AS hnp, value->>'ipv4_hoa' AS ipv4_hoa, value->>'lifetime' AS lifetime,
        datetime(value->>'expires', 'unixepoch') AS expires_utc"""),
    "ro_initiated": ("ro_initiator", """value->'pair'->>'local' AS local, value->'pair'->>'remote' AS remote,
        value->'peer'->>'address' AS peer, value->>'mode' AS mode,
        datetime(value->'binding'->>'expires', 'unixepoch') AS expires_utc"""),
    "ro_answered": ("ro_responder", """value->'pair'->>'local' AS local, value->'pair'->>'remote' AS remote,
        value->>'peer' AS peer, value->>'mode' AS mode,
        datetime(value->>'expires', 'unixepoch') AS expires_utc"""),
    "replay": ("replay", "key AS peer, value AS newest_timestamp"),
}


class StoreError(Exception):
    """The store cannot be opened or written, in one line."""


class Store:
    """One node's SQLite file. Not thread-safe: the daemon's loop only."""

    def __init__(self, path: Path, *, synchronous: str = "full"):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(self.path, 0o600)
            # autocommit off by hand: each write() is one explicit transaction
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk (fsync of the WAL) before the PBA
            # leaves, across a power cut too; NORMAL survives kill -9 only.
            self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            self._check_version()
            for view, (kind, columns) in _VIEWS.items():
                self._db.execute(f"CREATE VIEW IF NOT EXISTS {view} AS SELECT {columns}, value "
                                 f"FROM records WHERE kind = '{kind}'")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from None

    def _check_version(self) -> None:
        found = self.meta("schema")
        if found is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(found) != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema {found}; this pmip6ctl reads {SCHEMA_VERSION}")

    # --- reading --------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def rows(self, kind: str) -> Iterator[tuple[str, str]]:
        """(key, value) of every record of a kind."""
        return iter(self._db.execute("SELECT key, value FROM records WHERE kind = ?", (kind,)).fetchall())

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return self._db.execute("SELECT count(*) FROM records").fetchone()[0]
        return self._db.execute("SELECT count(*) FROM records WHERE kind = ?", (kind,)).fetchone()[0]

    @property
    def empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None

    # --- writing --------------------------------------------------------------------------
    def write(self, puts: Iterable[tuple[str, str, str]], deletes: Iterable[tuple[str, str]] = (),
              meta: dict[str, str] | None = None) -> None:
        """One transaction: the rows (kind, key, value) put, (kind, key)
        deleted; committed (and, with synchronous = full, on disk) when
        this returns. Nothing of it is kept when it raises."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM records WHERE kind = ? AND key = ?", deletes)
                self._db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", puts)
                if meta:
                    self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"writing {self.path} failed: {exc}") from None

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._db.close()

    def size(self) -> int:
        """Octets on disk: the file and its write-ahead log."""
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
