"""The publisher's durable outbox: a sqlite3 table, rows in arrival order.

A row is committed (WAL, ``synchronous=FULL``) before :meth:`Spool.put` returns,
so it survives a SIGKILL or a power cut; it leaves only when the broker has
acknowledged it. Bound policy (``max_rows``): when full, the oldest *quality*
rows are evicted first; alerts (and their strips) are never evicted nor refused: an alert arriving
at a full spool is still stored, beyond the bound, with a warning. A quality
event arriving at a spool full of alerts is dropped, with a warning.
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

    def __init__(self, path: str | Path, max_rows: int) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
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
        except sqlite3.Error as exc:
            raise PublishError(f"Cannot open the spool {str(self.path)!r}: {exc}") from None

    def __len__(self) -> int:
        return self._count

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
                if not fsync:
                    self._db.execute("PRAGMA synchronous=NORMAL")
                try:
                    cur = self._db.execute(
                        "INSERT INTO spool (kind, topic, payload, qos, created) VALUES (?,?,?,?,?)",
                        (kind, topic, payload, qos, time.time()),
                    )
                finally:
                    if not fsync:
                        self._db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise PublishError(f"Cannot write to the spool {str(self.path)!r}: {exc}") from None
            self._count += 1
            if self._count >= WARN_FRACTION * self.max_rows:
                self._warn(
                    "fill",
                    f"MQTT spool {self._count}/{self.max_rows} rows full: "
                    "the broker has not acknowledged for a while",
                )
            return cur.lastrowid

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
            return self._db.execute(
                "SELECT id, kind, topic, payload, qos FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, limit),
            ).fetchall()

    def delete(self, ids: list[int]) -> None:
        """Remove acknowledged rows (ids already gone are ignored)."""
        if not ids:
            return
        with self._lock:
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
