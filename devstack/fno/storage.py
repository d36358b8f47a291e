"""SQLite state of the simulator: entity rows, event endpoints, activations and the errors list.

Rows are JSON documents keyed by (entity, normalized key). Decimals are stored as text, never as
float. All access happens on the event loop thread, so one connection suffices; transactions are
explicit so that a `$batch` changeset can roll back as a whole.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# F&O RecIds start here in a fresh database; control numbers look the same.
FIRST_RECID = 5637144576
# Keys per `IN (...)` query: below SQLite's smallest limit on bound parameters (999).
_IN_CHUNK = 900

_DDL = """
CREATE TABLE IF NOT EXISTS records (
    entity TEXT NOT NULL, keyid TEXT NOT NULL, company TEXT NOT NULL,
    recid INTEGER NOT NULL, version INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (entity, keyid)
);
CREATE INDEX IF NOT EXISTS records_company ON records (entity, company, keyid);
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS endpoints (name TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS activations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, legal_entity TEXT NOT NULL,
    endpoint TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS event_errors (
    id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT NOT NULL, event_id TEXT NOT NULL,
    payload TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, failed_at TEXT NOT NULL
);
"""


@dataclass
class StoredRow:
    recid: int
    version: int
    company: str
    data: dict[str, Any]


class Storage:
    def __init__(self, path: str = ":memory:") -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA journal_mode=MEMORY")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_DDL)
        self._depth = 0
        # Writes per entity set, ever: a query result computed at the same count is still the answer.
        self.stamps: Counter[str] = Counter()

    def close(self) -> None:
        self.db.close()

    # ---- transactions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing; nests through savepoints (a changeset inside a $batch, say)."""
        name = f"sp{self._depth}"
        self.db.execute("BEGIN" if self._depth == 0 else f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
        except BaseException:
            # A query answered inside the transaction (a read in a changeset) saw what is now undone.
            self.stamps.update(self.stamps.keys())
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("ROLLBACK")
            else:
                self.db.execute(f"ROLLBACK TO {name}")
                self.db.execute(f"RELEASE {name}")
            raise
        else:
            self._depth -= 1
            self.db.execute("COMMIT" if self._depth == 0 else f"RELEASE {name}")

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    # ---- sequences -----------------------------------------------------------------------------
    def next_number(self, name: str, step: int = 1) -> int:
        row = self.db.execute("SELECT value FROM sequences WHERE name = ?", (name,)).fetchone()
        value = (row[0] if row else FIRST_RECID - 1) + step
        self.db.execute(
            "INSERT INTO sequences(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        return value

    # ---- entity rows -----------------------------------------------------------------------------
    def get(self, entity: str, keyid: str) -> StoredRow | None:
        row = self.db.execute(
            "SELECT recid, version, company, data FROM records WHERE entity = ? AND keyid = ?", (entity, keyid)
        ).fetchone()
        return StoredRow(row[0], row[1], row[2], json.loads(row[3])) if row else None

    def insert(self, entity: str, keyid: str, company: str, data: dict[str, Any]) -> StoredRow:
        self.stamps[entity] += 1
        recid = self.next_number("recid")
        self.db.execute(
            "INSERT INTO records(entity, keyid, company, recid, version, data) VALUES (?, ?, ?, ?, 1, ?)",
            (entity, keyid, company, recid, json.dumps(data)),
        )
        return StoredRow(recid, 1, company, data)

    def update(self, entity: str, keyid: str, data: dict[str, Any]) -> int:
        self.stamps[entity] += 1
        self.db.execute(
            "UPDATE records SET data = ?, version = version + 1 WHERE entity = ? AND keyid = ?",
            (json.dumps(data), entity, keyid),
        )
        return self.db.execute(
            "SELECT version FROM records WHERE entity = ? AND keyid = ?", (entity, keyid)
        ).fetchone()[0]

    def delete(self, entity: str, keyid: str) -> None:
        self.stamps[entity] += 1
        self.db.execute("DELETE FROM records WHERE entity = ? AND keyid = ?", (entity, keyid))

    # ---- many rows at once (the admin load and delete: one statement for all rows) -----------------
    def get_many(self, entity: str, keyids: list[str]) -> dict[str, StoredRow]:
        found: dict[str, StoredRow] = {}
        for at in range(0, len(keyids), _IN_CHUNK):
            chunk = keyids[at:at + _IN_CHUNK]
            cur = self.db.execute(
                "SELECT keyid, recid, version, company, data FROM records WHERE entity = ? AND keyid IN "
                f"({','.join('?' * len(chunk))})", (entity, *chunk),
            )
            for keyid, recid, version, company, data in cur:
                found[keyid] = StoredRow(recid, version, company, json.loads(data))
        return found

    def insert_many(self, entity: str, rows: list[tuple[str, str, int, int, dict[str, Any]]]) -> None:
        """(keyid, company, recid, version, data) rows, RecIds already taken with next_number."""
        self.stamps[entity] += 1
        self.db.executemany(
            "INSERT INTO records(entity, keyid, company, recid, version, data) VALUES (?, ?, ?, ?, ?, ?)",
            ((entity, keyid, company, recid, version, json.dumps(data))
             for keyid, company, recid, version, data in rows),
        )

    def update_many(self, entity: str, rows: list[tuple[str, int, dict[str, Any]]]) -> None:
        """(keyid, new version, data) rows."""
        self.stamps[entity] += 1
        self.db.executemany(
            "UPDATE records SET data = ?, version = ? WHERE entity = ? AND keyid = ?",
            ((json.dumps(data), version, entity, keyid) for keyid, version, data in rows),
        )

    def delete_many(self, entity: str, keyids: list[str]) -> int:
        self.stamps[entity] += 1
        before = self.db.total_changes
        self.db.executemany("DELETE FROM records WHERE entity = ? AND keyid = ?", ((entity, k) for k in keyids))
        return self.db.total_changes - before

    def scan(self, entity: str, company: str | None) -> Iterator[StoredRow]:
        """Rows of an entity in key order, of one company or (None) of all companies."""
        if company is None:
            cur = self.db.execute(
                "SELECT recid, version, company, data FROM records WHERE entity = ? ORDER BY keyid", (entity,)
            )
        else:
            cur = self.db.execute(
                "SELECT recid, version, company, data FROM records WHERE entity = ? AND company = ? ORDER BY keyid",
                (entity, company),
            )
        for recid, version, comp, data in cur:
            yield StoredRow(recid, version, comp, json.loads(data))

    def count(self, entity: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM records WHERE entity = ?", (entity,)).fetchone()[0]

    # ---- event registry ---------------------------------------------------------------------------
    def put_endpoint(self, name: str, config: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO endpoints(name, config) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET config = excluded.config",
            (name, json.dumps(config)),
        )

    def endpoints(self) -> dict[str, dict[str, Any]]:
        return {n: json.loads(c) for n, c in self.db.execute("SELECT name, config FROM endpoints ORDER BY name")}

    def delete_endpoint(self, name: str) -> bool:
        self.db.execute("DELETE FROM activations WHERE endpoint = ?", (name,))
        return self.db.execute("DELETE FROM endpoints WHERE name = ?", (name,)).rowcount > 0

    def add_activation(self, event_id: str, legal_entity: str, endpoint: str) -> int:
        cur = self.db.execute(
            "INSERT INTO activations(event_id, legal_entity, endpoint, active) VALUES (?, ?, ?, 1)",
            (event_id, legal_entity, endpoint),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def activations(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT id, event_id, legal_entity, endpoint, active FROM activations ORDER BY id")
        return [
            {"id": i, "eventId": e, "legalEntity": le, "endpoint": ep, "active": bool(a)} for i, e, le, ep, a in cur
        ]

    def set_activation_active(self, activation_id: int, active: bool) -> bool:
        cur = self.db.execute("UPDATE activations SET active = ? WHERE id = ?", (int(active), activation_id))
        return cur.rowcount > 0

    def delete_activation(self, activation_id: int) -> bool:
        return self.db.execute("DELETE FROM activations WHERE id = ?", (activation_id,)).rowcount > 0

    def add_error(self, endpoint: str, event_id: str, payload: str, error: str, attempts: int, failed_at: str) -> int:
        cur = self.db.execute(
            "INSERT INTO event_errors(endpoint, event_id, payload, error, attempts, failed_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (endpoint, event_id, payload, error, attempts, failed_at),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def errors(self) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT id, endpoint, event_id, payload, error, attempts, failed_at FROM event_errors ORDER BY id"
        )
        return [
            {"id": i, "endpoint": ep, "eventId": ev, "payload": p, "error": er, "attempts": a, "failedAt": f}
            for i, ep, ev, p, er, a, f in cur
        ]

    def take_error(self, error_id: int) -> dict[str, Any] | None:
        for err in self.errors():
            if err["id"] == error_id:
                self.db.execute("DELETE FROM event_errors WHERE id = ?", (error_id,))
                return err
        return None
