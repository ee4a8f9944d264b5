"""The publisher's durable outbox: a sqlite3 table, rows in arrival order.

A row is committed (WAL, ``synchronous=FULL``) before :meth:`Spool.put` returns,
so it survives a SIGKILL or a power cut; it leaves only when the broker has
acknowledged it. Bound policy (``max_rows``): when full, the oldest *quality*
rows are evicted first; alerts (and their strips) are never evicted nor refused: an alert arriving
at a full spool is still stored, beyond the bound, with a warning. A quality
event arriving at a spool full of alerts is dropped, with a warning.

A full disk, or the spool's size limit (``max_bytes``, sqlite's
``max_page_count``): the row that does not fit makes room by evicting quality
rows; an alert (or strip) that still does not fit is kept in memory, in
order with the others, until the broker acknowledges it (``in_memory``
counts them; they do not survive a restart), never dropped; anything else is
dropped. ``storage_problem`` then says so (the agent raises a technical alert).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from bridge.errors import PublishError

log = logging.getLogger("bridge.publish")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created REAL NOT NULL
)
"""
WARN_FRACTION = 0.8
WARN_EVERY_S = 60.0


class Spool:
    """Rows ``(id, kind, topic, payload, qos)``; thread-safe, one sqlite connection."""

    def __init__(self, path: str | Path, max_rows: int, max_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        self._memory: list[tuple[int, str, str, bytes, int]] = []  # alerts the disk refused
        self.storage_problem: str | None = None  # why rows could not be stored, if they were not
        self._lock = threading.Lock()
        self._last_warn: dict[str, float] = {}
        self.evicted = 0  # quality rows evicted or refused because the spool was full
        self.over_bound = 0  # alerts stored beyond max_rows
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            (self._count,) = self._db.execute("SELECT COUNT(*) FROM spool").fetchone()
            (top,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM spool").fetchone()
            self._next_id = int(top) + 1  # one sequence for the disk and memory rows
            if max_bytes is not None:
                (page,) = self._db.execute("PRAGMA page_size").fetchone()
                (used,) = self._db.execute("PRAGMA page_count").fetchone()
                pages = max(int(max_bytes) // int(page), int(used) + 1, 8)
                self._db.execute(f"PRAGMA max_page_count={pages}")
        except sqlite3.Error as exc:
            raise PublishError(f"Cannot open the spool {str(self.path)!r}: {exc}") from None

    def __len__(self) -> int:
        return self._count + len(self._memory)

    @property
    def in_memory(self) -> int:
        """Alerts held in memory because the disk or the size limit refused them."""
        return len(self._memory)

    def _warn(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(key, -1e9) >= WARN_EVERY_S:
            self._last_warn[key] = now
            log.warning(message)

    def put(
        self, kind: str, topic: str, payload: bytes, qos: int, *, fsync: bool = True
    ) -> int | None:
        """Store one message durably; its row id, or None for a quality row refused.

        ``fsync`` False: committed without waiting for the disk (WAL, ``synchronous=NORMAL``):
        safe if the process dies, durable against a power cut at the next fsynced commit.
        """
        with self._lock:
            try:
                if self._count >= self.max_rows and not self._make_room(kind):
                    return None
                row_id = self._next_id
                try:
                    self._insert(row_id, kind, topic, payload, qos, fsync)
                except sqlite3.DatabaseError as exc:
                    if not _is_full(exc):
                        raise
                    if not self._full(kind, str(exc)):
                        return None
                    try:  # room was made by evicting quality rows
                        self._insert(row_id, kind, topic, payload, qos, fsync)
                    except sqlite3.DatabaseError as again:
                        if not _is_full(again):
                            raise
                        self._memory.append((row_id, kind, topic, payload, qos))
                        self._next_id += 1
                        return row_id
            except sqlite3.Error as exc:
                raise PublishError(f"Cannot write to the spool {str(self.path)!r}: {exc}") from None
            self._next_id += 1
            self._count += 1
            if self._count >= WARN_FRACTION * self.max_rows:
                self._warn(
                    "fill",
                    f"MQTT spool {self._count}/{self.max_rows} rows full: "
                    "the broker has not acknowledged for a while",
                )
            return row_id

    def _insert(self, row_id, kind, topic, payload, qos, fsync) -> None:
        if not fsync:
            self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute(
                "INSERT INTO spool (id, kind, topic, payload, qos, created) VALUES (?,?,?,?,?,?)",
                (row_id, kind, topic, payload, qos, time.time()),
            )
        finally:
            if not fsync:
                self._db.execute("PRAGMA synchronous=FULL")

    def _full(self, kind: str, error: str) -> bool:
        """The disk (or max_bytes) is full: evict quality rows; True if ``kind`` is kept."""
        for sql in ("PRAGMA wal_checkpoint(TRUNCATE)", "DELETE FROM spool WHERE kind NOT IN "
                    "('alert', 'strip')", "PRAGMA wal_checkpoint(TRUNCATE)"):  # fmt: skip
            try:  # on a full disk even these may fail: then nothing is evicted
                cur = self._db.execute(sql)
            except sqlite3.DatabaseError:
                continue
            if sql.startswith("DELETE"):
                self._count -= cur.rowcount
                self.evicted += cur.rowcount
        keep = kind in ("alert", "strip")
        if not keep:
            self.evicted += 1
        self.storage_problem = (
            f"the spool {self.path} is full ({error}): {self.evicted} quality events "
            "dropped; alerts are kept (in memory when the disk refuses them)"
        )
        self._warn("disk", f"MQTT {self.storage_problem}")
        return keep

    def _make_room(self, kind: str) -> bool:
        cur = self._db.execute(
            "DELETE FROM spool WHERE id IN (SELECT id FROM spool WHERE kind NOT IN "
            "('alert', 'strip') "
            "ORDER BY id LIMIT ?)",
            (self._count - self.max_rows + 1,),
        )
        self._count -= cur.rowcount
        self.evicted += cur.rowcount
        if cur.rowcount:
            self._warn("evict", "MQTT spool full: dropped the oldest quality events")
        if self._count < self.max_rows:
            return True
        if kind in ("alert", "strip"):  # an alert's strip is kept like the alert
            self.over_bound += 1
            self._warn(
                "over",
                f"MQTT spool full of alerts ({self._count} >= {self.max_rows}): "
                "alerts are still kept, beyond the bound",
            )
            return True
        self.evicted += 1
        self._warn("refuse", "MQTT spool full of alerts: quality events are dropped")
        return False

    def after(self, last_id: int, limit: int) -> list[tuple[int, str, str, bytes, int]]:
        """Up to ``limit`` rows with id > ``last_id``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, payload, qos FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, limit),
            ).fetchall()
            if self._memory:
                rows = sorted(rows + [r for r in self._memory if r[0] > last_id])[:limit]
            return rows

    def delete(self, ids: list[int]) -> None:
        """Remove acknowledged rows (ids already gone are ignored)."""
        if not ids:
            return
        with self._lock:
            if self._memory:
                gone = set(ids)
                self._memory = [r for r in self._memory if r[0] not in gone]
            self._db.execute("BEGIN")
            removed = 0
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                removed += self._db.execute(
                    f"DELETE FROM spool WHERE id IN ({marks})", chunk
                ).rowcount
            self._db.execute("COMMIT")
            self._count -= removed

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _is_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: the disk, or max_page_count (an exceeded file-size limit reads alike)."""
    text = str(exc).lower()
    return "full" in text or "disk i/o error" in text
