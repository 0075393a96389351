"""The fault journal: an append-only JSON-lines file that outlives the drill process.

Every fault is written here *before* it is injected, and marked once it is reverted, so that
``drdrill recover`` can undo whatever a killed run left behind. One line an event:

- ``{"op":"inject","id","run_id","pid","pid_create_time","host","kind","describe","record","utc"}``
- ``{"op":"reverted","id","utc","result":{"note",...}}``
- ``{"op":"revert_failed","id","utc","error"}`` (the fault stays open)

Appends take an exclusive ``flock`` and go out in one ``write()`` on an ``O_APPEND`` descriptor,
then ``fsync``: several processes (pytest-xdist workers) can share one journal and every line
stays whole, whatever its length.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psutil

from drdrill.defaults import DEFAULT_JOURNAL_PATH
from drdrill.errors import FaultError, InputError

# Every line starts with this (key order and separators are fixed by ``_dumps``); a line that
# does not parse but starts like this, or is a prefix of it, is a write cut short by a kill.
_LINE_PREFIX: Final = '{"op":"'


class JournalWarning(UserWarning):
    """A journal line that was skipped: a write torn by a kill, or an op this version ignores."""


@dataclass(frozen=True)
class JournalEntry:
    """One injected fault as the journal recorded it; open until a ``reverted`` line closes it."""

    id: str
    run_id: str
    pid: int
    host: str
    kind: str
    description: str
    record: Mapping[str, Any]
    utc: str
    pid_create_time: float | None = None
    last_error: str | None = None


def utc_now() -> str:
    """The current UTC time in ISO 8601 with a ``Z``, as journal lines carry it."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dumps(obj: Mapping[str, Any]) -> str:
    # Compact and ASCII-only: one line, no multi-byte characters to tear in half.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _own_create_time() -> float | None:
    try:
        return psutil.Process(os.getpid()).create_time()
    except psutil.Error:  # pragma: no cover - our own process is always there
        return None


class Journal:
    """The journal file at ``path``; cheap to construct, opens the file for each operation."""

    def __init__(self, path: Path | str = DEFAULT_JOURNAL_PATH) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def exists(self) -> bool:
        """Whether the journal file is there at all."""
        return self.path.exists()

    # -- writing -------------------------------------------------------------------------------

    def add_inject(
        self, *, run_id: str, kind: str, description: str, record: Mapping[str, Any]
    ) -> JournalEntry:
        """Record a fault about to be injected and return its entry (with a fresh id)."""
        entry = JournalEntry(
            id=uuid.uuid4().hex,
            run_id=run_id,
            pid=os.getpid(),
            host=socket.gethostname(),
            kind=kind,
            description=description,
            record=dict(record),
            utc=utc_now(),
            pid_create_time=_own_create_time(),
        )
        line = {
            "op": "inject",
            "id": entry.id,
            "run_id": entry.run_id,
            "pid": entry.pid,
            "pid_create_time": entry.pid_create_time,
            "host": entry.host,
            "kind": entry.kind,
            "describe": entry.description,
            "record": entry.record,
            "utc": entry.utc,
        }
        try:
            text = _dumps(line)
        except (TypeError, ValueError) as exc:
            # Checked before the fault is injected: a record that cannot be saved means no undo.
            raise FaultError(f"{kind}: record is not JSON ({exc}); fault not injected") from exc
        self._append(text)
        return entry

    def mark_reverted(
        self, entry_id: str, note: str, data: Mapping[str, Any] | None = None
    ) -> None:
        """Close an entry: its fault was reverted; ``note`` says what that did."""
        result = {"note": note, **(data or {})}
        self._append(_dumps({"op": "reverted", "id": entry_id, "utc": utc_now(), "result": result}))

    def mark_revert_failed(self, entry_id: str, error: str) -> None:
        """Note a failed revert; the entry stays open for ``drdrill recover``."""
        self._append(
            _dumps({"op": "revert_failed", "id": entry_id, "utc": utc_now(), "error": error})
        )

    def _append(self, line: str) -> None:
        data = (line + "\n").encode("ascii")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            # A writer killed mid-line left no newline: end its fragment so ours stays whole.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            written = os.write(fd, data)
            if written != len(data):  # pragma: no cover - disk full; the reader skips the tear
                raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
        if created:
            _fsync_dir(self.path.parent)

    # -- reading -------------------------------------------------------------------------------

    def open_entries(self, run_id: str | None = None) -> list[JournalEntry]:
        """Faults injected but not reverted (of one run, or all), in the order they were injected.

        A missing journal has none. A torn line is skipped with a :class:`JournalWarning`; a
        line that is not a journal line at all raises :class:`InputError` naming ``path:line``.
        """
        entries: dict[str, JournalEntry] = {}
        for where, obj in self._lines():
            op = obj.get("op")
            if op == "inject":
                entry = _entry_from(obj, where)
                entries[entry.id] = entry
            elif op == "reverted":
                entries.pop(_str_field(obj, "id", where), None)
            elif op == "revert_failed":
                entry_id = _str_field(obj, "id", where)
                if entry_id in entries:
                    error = obj.get("error")
                    entries[entry_id] = replace(entries[entry_id], last_error=str(error))
            else:
                warnings.warn(f"{where}: unknown op {op!r}, line skipped", JournalWarning, 2)
        return [e for e in entries.values() if run_id is None or e.run_id == run_id]

    def _lines(self) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # no half-written line from a live writer
            with os.fdopen(os.dup(fd), "rb") as f:
                raw = f.read()
        finally:
            os.close(fd)
        for number, chunk in enumerate(raw.split(b"\n"), start=1):
            where = f"{self.path}:{number}"
            if not chunk.strip():
                continue
            try:
                text = chunk.decode("utf-8")
                obj = json.loads(text)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                text = chunk.decode("utf-8", errors="replace")
                if text.startswith(_LINE_PREFIX) or _LINE_PREFIX.startswith(text):
                    warnings.warn(f"{where}: torn line skipped", JournalWarning, 3)
                    continue
                raise InputError(where, "not a drdrill journal line (invalid JSON)") from exc
            if not isinstance(obj, dict) or "op" not in obj:
                raise InputError(where, "not a drdrill journal line (no 'op')")
            yield where, obj


def _fsync_dir(path: Path) -> None:
    # A new file's directory entry is durable only once its directory is synced.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _str_field(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise InputError(where, f"journal line lacks a string {key!r}")
    return value


def _entry_from(obj: Mapping[str, Any], where: str) -> JournalEntry:
    pid = obj.get("pid")
    record = obj.get("record")
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise InputError(where, "journal line lacks an integer 'pid'")
    if not isinstance(record, dict):
        raise InputError(where, "journal line lacks an object 'record'")
    created = obj.get("pid_create_time")
    return JournalEntry(
        id=_str_field(obj, "id", where),
        run_id=_str_field(obj, "run_id", where),
        pid=pid,
        host=_str_field(obj, "host", where),
        kind=_str_field(obj, "kind", where),
        description=_str_field(obj, "describe", where),
        record=record,
        utc=_str_field(obj, "utc", where),
        pid_create_time=float(created) if isinstance(created, int | float) else None,
    )
