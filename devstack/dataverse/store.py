"""SQLite storage: one generic row table (JSON per row, decimals as strings), a unique index per
alternate key, and a change log whose sequence is the row version (etag, RowVersion, delta tokens).

One connection, explicit transactions. Writers are serialized by the caller (`Database.unit`), which
matches Dataverse's per-row locking closely enough for a single-process simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import Any

DDL = """
CREATE TABLE IF NOT EXISTS rows (tbl TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (tbl, id));
CREATE TABLE IF NOT EXISTS keys (tbl TEXT NOT NULL, keyname TEXT NOT NULL, keyval TEXT NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (tbl, keyname, keyval));
CREATE INDEX IF NOT EXISTS keys_by_id ON keys (tbl, id);
CREATE TABLE IF NOT EXISTS changes (version INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, id TEXT NOT NULL,
    op TEXT NOT NULL, at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));
CREATE INDEX IF NOT EXISTS changes_by_tbl ON changes (tbl, version);
"""

# Values per `IN (...)` query: below SQLite's smallest limit on bound parameters (999).
_IN_CHUNK = 900

_unit_hooks: ContextVar[list[Callable[[], None]] | None] = ContextVar("dataverse_unit_hooks", default=None)


class KeyConflict(Exception):
    """An alternate-key (or primary-key) value is already taken."""

    def __init__(self, keyname: str) -> None:
        super().__init__(keyname)
        self.keyname = keyname


class Database:
    def __init__(self, path: str = ":memory:") -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(DDL)
        self.lock = asyncio.Lock()
        # Parsed rows per table, loaded on first read: queries filter in Python, so decoding every row's
        # JSON on every request would dominate. Only this process writes; a rollback drops the cache.
        self._cache: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}
        # Writes per table, ever: a query result computed at the same count is still the answer.
        self.stamps: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def unit(self) -> AsyncIterator[None]:
        """One atomic write unit (a request, or a whole $batch changeset). Nested units join the outer one."""
        if _unit_hooks.get() is not None:
            yield
            return
        hooks: list[Callable[[], None]] = []
        async with self.lock:
            token = _unit_hooks.set(hooks)
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                self._cache.clear()
                # A query answered inside the unit (a read while a sync webhook waits) saw what is now undone.
                self.stamps.update(self.stamps.keys())
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                _unit_hooks.reset(token)
        for hook in hooks:
            hook()

    @staticmethod
    def after_commit(hook: Callable[[], None]) -> None:
        """Run `hook` once the current unit commits (dropped on rollback); at once outside a unit."""
        hooks = _unit_hooks.get()
        if hooks is None:
            hook()
        else:
            hooks.append(hook)

    # -- rows -------------------------------------------------------------------------------------------

    def _table(self, tbl: str) -> dict[str, tuple[int, dict[str, Any]]]:
        rows = self._cache.get(tbl)
        if rows is None:
            rows = {
                row_id: (version, json.loads(data))
                for row_id, version, data in self.conn.execute("SELECT id, version, data FROM rows WHERE tbl=?", (tbl,))
            }
            self._cache[tbl] = rows
        return rows

    def get(self, tbl: str, row_id: str) -> tuple[int, dict[str, Any]] | None:
        """(version, stored row). The row dict is shared with the cache: read it, never change it."""
        return self._table(tbl).get(row_id)

    def get_many(self, tbl: str, ids: list[str]) -> list[tuple[str, int, dict[str, Any]]]:
        """(id, version, stored row) of those of `ids` that exist, in that order; from the parsed rows when they
        are loaded, else straight from SQLite (a few rows need not parse the whole table)."""
        cached = self._cache.get(tbl)
        if cached is not None:
            return [(row_id, *cached[row_id]) for row_id in ids if row_id in cached]
        found: dict[str, tuple[int, dict[str, Any]]] = {}
        for at in range(0, len(ids), _IN_CHUNK):
            chunk = ids[at:at + _IN_CHUNK]
            found.update((row_id, (version, json.loads(data))) for row_id, version, data in self.conn.execute(
                f"SELECT id, version, data FROM rows WHERE tbl=? AND id IN ({','.join('?' * len(chunk))})",
                (tbl, *chunk)))
        return [(row_id, *found[row_id]) for row_id in ids if row_id in found]

    def scan(self, tbl: str) -> Iterator[tuple[str, int, dict[str, Any]]]:
        for row_id, (version, data) in list(self._table(tbl).items()):
            yield row_id, version, data

    def count(self, tbl: str) -> int:
        return len(self._table(tbl))

    def _log(self, tbl: str, row_id: str, op: str) -> int:
        cur = self.conn.execute("INSERT INTO changes (tbl, id, op) VALUES (?, ?, ?)", (tbl, row_id, op))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def next_version(self, tbl: str, row_id: str, op: str) -> int:
        """Log a change and return its version: the new row's versionnumber."""
        return self._log(tbl, row_id, op)

    def put(self, tbl: str, row_id: str, version: int, data: dict[str, Any], keys: dict[str, str | None],
            *, new: bool) -> None:
        self.stamps[tbl] += 1
        if new:
            try:
                self.conn.execute(
                    "INSERT INTO rows (tbl, id, version, data) VALUES (?, ?, ?, ?)",
                    (tbl, row_id, version, json.dumps(data)),
                )
            except sqlite3.IntegrityError:
                raise KeyConflict("primary") from None
        else:
            self.conn.execute(
                "UPDATE rows SET version=?, data=? WHERE tbl=? AND id=?", (version, json.dumps(data), tbl, row_id)
            )
            self.conn.execute("DELETE FROM keys WHERE tbl=? AND id=?", (tbl, row_id))
        for keyname, keyval in keys.items():
            if keyval is None:
                continue
            try:
                self.conn.execute(
                    "INSERT INTO keys (tbl, keyname, keyval, id) VALUES (?, ?, ?, ?)", (tbl, keyname, keyval, row_id)
                )
            except sqlite3.IntegrityError:
                raise KeyConflict(keyname) from None
        if tbl in self._cache:
            self._cache[tbl][row_id] = (version, data)

    def delete(self, tbl: str, row_id: str) -> None:
        self.stamps[tbl] += 1
        self.conn.execute("DELETE FROM rows WHERE tbl=? AND id=?", (tbl, row_id))
        self.conn.execute("DELETE FROM keys WHERE tbl=? AND id=?", (tbl, row_id))
        self._log(tbl, row_id, "delete")
        if tbl in self._cache:
            self._cache[tbl].pop(row_id, None)

    # -- many rows at once (/_sim/load: one statement for all rows) --------------------------------------

    def key_index(self, tbl: str) -> dict[tuple[str, str], str]:
        """Every alternate-key value of a table: (key name, key text) -> row id."""
        return {(name, value): row_id for name, value, row_id in
                self.conn.execute("SELECT keyname, keyval, id FROM keys WHERE tbl=?", (tbl,))}

    def put_many(self, tbl: str, rows: list[tuple[str, dict[str, Any], dict[str, str | None], bool]]) -> list[int]:
        """Store (id, data, key texts, new) rows, each with a change logged as `put` does; their versions."""
        self.stamps[tbl] += 1
        first = self.current_version() + 1
        versions = list(range(first, first + len(rows)))
        self.conn.executemany("INSERT INTO changes (version, tbl, id, op) VALUES (?, ?, ?, 'upsert')",
                              ((v, tbl, row[0]) for v, row in zip(versions, rows, strict=True)))
        for data, version in zip((row[1] for row in rows), versions, strict=True):
            data["versionnumber"] = version
        self.conn.executemany("INSERT INTO rows (tbl, id, version, data) VALUES (?, ?, ?, ?)",
                              ((tbl, row_id, v, json.dumps(data))
                               for v, (row_id, data, _, new) in zip(versions, rows, strict=True) if new))
        self.conn.executemany("UPDATE rows SET version=?, data=? WHERE tbl=? AND id=?",
                              ((v, json.dumps(data), tbl, row_id)
                               for v, (row_id, data, _, new) in zip(versions, rows, strict=True) if not new))
        self.conn.executemany("DELETE FROM keys WHERE tbl=? AND id=?", ((tbl, row[0]) for row in rows if not row[3]))
        self.conn.executemany("INSERT INTO keys (tbl, keyname, keyval, id) VALUES (?, ?, ?, ?)",
                              ((tbl, name, text, row_id) for row_id, _, keys, _ in rows
                               for name, text in keys.items() if text is not None))
        if tbl in self._cache:
            self._cache[tbl].update((row[0], (v, row[1])) for v, row in zip(versions, rows, strict=True))
        return versions

    def find_by_key(self, tbl: str, keyname: str, keyval: str) -> str | None:
        found = self.conn.execute(
            "SELECT id FROM keys WHERE tbl=? AND keyname=? AND keyval=?", (tbl, keyname, keyval)
        ).fetchone()
        return None if found is None else found[0]

    def find_by_keys(self, tbl: str, wanted: list[tuple[str, str]]) -> set[str]:
        """The ids of the rows with any of these (key name, key text) values (one indexed query per key)."""
        texts: dict[str, list[str]] = {}
        for keyname, keyval in wanted:
            texts.setdefault(keyname, []).append(keyval)
        found: set[str] = set()
        for keyname, values in texts.items():
            for at in range(0, len(values), _IN_CHUNK):
                chunk = values[at:at + _IN_CHUNK]
                found.update(row_id for (row_id,) in self.conn.execute(
                    f"SELECT id FROM keys WHERE tbl=? AND keyname=? AND keyval IN ({','.join('?' * len(chunk))})",
                    (tbl, keyname, *chunk)))
        return found

    # -- change tracking --------------------------------------------------------------------------------

    def current_version(self) -> int:
        found = self.conn.execute("SELECT max(version) FROM changes").fetchone()[0]
        return found or 0

    def changes_since(self, tbl: str, version: int) -> list[tuple[str, int, str]]:
        """(id, last version, last op) per row changed after `version`, oldest change first."""
        return [
            (row_id, last, op)
            for row_id, last, op in self.conn.execute(
                "SELECT c.id, c.version, c.op FROM changes c JOIN "
                "(SELECT id, max(version) AS v FROM changes WHERE tbl=? AND version>? GROUP BY id) m "
                "ON c.id=m.id AND c.version=m.v WHERE c.tbl=? ORDER BY c.version",
                (tbl, version, tbl),
            )
        ]
