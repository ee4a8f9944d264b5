"""Replay: WFDB records played as a live stream (implements ``SampleSource``).

Records are played one after the other, each its own stream segment: its
chunks carry ``record`` and start at ``start_sample`` 0, and its last chunk
has ``end_of_record=True`` (the agent then flushes the partial frame and
resets, so each record's frames are the trainer's). ``speed`` 1 paces the
samples in real time, 10 ten times faster, ``None`` as fast as the consumer
takes them; pacing uses ``time.monotonic`` against the start of each record,
so a slow consumer does not accumulate drift. ``loop`` plays the list again
and again until :meth:`close`.

A record named explicitly that cannot be read is an error
(:class:`~edge.errors.RecordError`, raised when the source is built); a bad
record found inside a folder is reported through ``on_skip`` and skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from edge.errors import RecordError, SourceError, check_positive
from edge.records import Record, find_records, read_record
from edge.sources import Chunk

_FLAG_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


class ReplaySource:
    """Play WFDB records (files or folders) as chunks of ``chunk_s`` seconds at their own rate."""

    def __init__(
        self,
        paths: list[str | Path] | tuple[str | Path, ...] | str | Path,
        *,
        speed: float | None = None,
        loop: bool = False,
        chunk_s: float = 0.1,
        on_skip: Callable[[str, str], None] | None = None,
    ) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        if not paths:
            raise SourceError("replay needs at least one record or folder")
        self.speed = None if speed is None else float(check_positive("speed", speed))
        self.loop = bool(loop)
        self.chunk_s = float(check_positive("chunk_s", chunk_s))
        self._on_skip = on_skip or (lambda name, why: _stderr(f"skipping record {name}: {why}"))
        self._stop = threading.Event()
        # (header path, named explicitly?) in play order
        self._items: list[tuple[Path, bool]] = []
        for p in map(Path, paths):
            if not p.exists() and p.name.lower() in _FLAG_WORDS:
                raise SourceError(
                    f"no record named {p.name!r}: boolean flags such as --json and --loop "
                    "take no value (write --json, not --json true)"
                )
            explicit = not p.is_dir()
            for h in find_records([p]):
                self._items.append((h, explicit))
        if not self._items:
            raise SourceError(f"no WFDB record (.hea) found in {', '.join(map(str, paths))}")
        self._cache: dict[Path, Record] = {}
        for h, explicit in self._items:
            if explicit:  # fail now, with the record's own message
                self._cache[h] = read_record(h)
        first = self._cache.get(self._items[0][0])
        self.fs = float(first.fs) if first is not None else self._peek_fs()
        self.skipped: list[str] = []

    def _peek_fs(self) -> float:
        from edge.records import read_header

        for h, _ in self._items:
            try:
                return float(read_header(h).fs)
            except RecordError:
                continue
        return 500.0

    @property
    def records(self) -> list[Path]:
        """Header files in play order."""
        return [h for h, _ in self._items]

    def _load(self, header: Path, explicit: bool) -> Record | None:
        rec = self._cache.get(header)
        if rec is not None:
            return rec
        try:
            rec = read_record(header)
        except RecordError as exc:
            if explicit:
                raise
            self.skipped.append(exc.record)
            self._on_skip(exc.record, exc.reason)
            return None
        if len(self._items) == 1 or (self.loop and len(self._items) <= 16):
            self._cache[header] = rec  # small playlists loop without re-reading
        return rec

    def chunks(self) -> Iterator[Chunk]:
        """Yield every record's chunks in order (forever with ``loop``), until :meth:`close`."""
        while not self._stop.is_set():
            played = 0
            for header, explicit in self._items:
                if self._stop.is_set():
                    return
                rec = self._load(header, explicit)
                if rec is None:
                    continue
                played += 1
                yield from self.record_chunks(rec)
            if not self.loop or played == 0:
                return

    def record_chunks(self, rec: Record) -> Iterator[Chunk]:
        """One record's chunks, paced at ``speed``; the last has ``end_of_record``."""
        fs = float(rec.fs)
        n = rec.signal.shape[1]
        step = max(1, round(self.chunk_s * fs))
        t0 = time.monotonic()
        meta = {"database": rec.database, "dx": rec.dx}
        for start in range(0, n, step):
            if self._stop.is_set():
                return
            stop = min(n, start + step)
            if self.speed is not None:
                due = t0 + stop / fs / self.speed
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            yield Chunk(
                samples=rec.signal[:, start:stop].copy(),
                fs=fs,
                start_sample=start,
                record=rec.name,
                received_at=time.monotonic(),
                end_of_record=stop == n,
                samples_left=n - stop,
                meta=meta,
            )

    def close(self) -> None:
        """Stop :meth:`chunks` (from any thread); safe to call twice."""
        self._stop.set()

    def __enter__(self) -> ReplaySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
