"""The fault journal: an append-only JSON-lines file that outlives the drill process.

Every fault is written here *before* it is injected, and marked once it is reverted, so that
``drdrill recover`` can undo whatever a killed run left behind. One line an event:

- ``{"op":"inject","id","run_id","pid","pid_create_time","host","kind","describe","record","utc"}``
- ``{"op":"reverted","id","utc","result":{"note",...}}``
- ``{"op":"revert_failed","id","utc","error"}`` (the fault stays open)

No secret is written (:mod:`drdrill.redact` decides what one is). The free text, ``describe``,
``error`` and the revert's ``result``, is redacted: nothing reads it back but a person. The
``record`` is what the undo is rebuilt from, so a secret in it cannot simply be masked: each
string holding one is written as its parts, the text around the secret and a reference to the
environment variable of the drill process that held it::

    "argv": ["app", {"$sealed": ["--db=mysql://app:", {"env": "DB_PASSWORD"}, "@db/app"]}]

and reading the journal (``drdrill recover``) puts the variable's value back. The value of a
secret-named key of an ``env`` mapping (a process's environment additions, ``DB_PASSWORD``)
counts as a secret too, whatever it is. A record holding a secret that no environment variable
holds cannot be journaled without it: the fault is refused before it is injected (a secret
written to disk, or an undo that restarts a process with ``***`` for its password, are both
worse). A record whose variable is not set when it is read cannot be rebuilt: it raises
:class:`FaultError` saying which to set, and its entry stays open.

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psutil

from drdrill.defaults import DEFAULT_JOURNAL_PATH
from drdrill.errors import FaultError, InputError
from drdrill.redact import (
    MASK,
    is_secret_key,
    redact,
    redact_data,
    register_secret,
    register_secrets,
    secret_spans,
)

# Every line starts with this (key order and separators are fixed by ``_dumps``); a line that
# does not parse but starts like this, or is a prefix of it, is a write cut short by a kill.
_LINE_PREFIX: Final = '{"op":"'
#: the key of a record string written without its secrets: its parts, text and references
SEALED_KEY: Final = "$sealed"
#: the key of a part that names the environment variable that held a secret
ENV_REF_KEY: Final = "env"


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
        """Record a fault about to be injected and return its entry (with a fresh id).

        The record is sealed (:func:`seal_record`, which registers the secrets it finds), then
        the description written redacted; the entry returned holds the record as given.
        :class:`FaultError` (nothing written) for a record that is not JSON or holds a secret
        no environment variable holds.
        """
        sealed = seal_record(record, kind)
        entry = JournalEntry(
            id=uuid.uuid4().hex,
            run_id=run_id,
            pid=os.getpid(),
            host=socket.gethostname(),
            kind=kind,
            description=redact(description),
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
            "record": sealed,
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
        """Close an entry: its fault was reverted; ``note`` says what that did (redacted)."""
        result = redact_data({"note": note, **(data or {})})
        self._append(_dumps({"op": "reverted", "id": entry_id, "utc": utc_now(), "result": result}))

    def mark_revert_failed(self, entry_id: str, error: str) -> None:
        """Note a failed revert (its error redacted); the entry stays open for ``drdrill
        recover``."""
        line = {"op": "revert_failed", "id": entry_id, "utc": utc_now(), "error": redact(error)}
        self._append(_dumps(line))

    def _append(self, line: str) -> None:
        data = (line + "\n").encode("ascii")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            # a path that cannot be the journal (a folder, a file system that refuses): one
            # line naming it, before the fault is injected
            why = f"cannot write the fault journal: {exc.strerror}"
            raise InputError(str(self.path), why) from None
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
        except OSError as exc:
            why = f"cannot read the fault journal: {exc.strerror}"
            raise InputError(str(self.path), why) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # no half-written line from a live writer
            with os.fdopen(os.dup(fd), "rb") as f:
                raw = f.read()
        except OSError as exc:  # a folder opens, and then cannot be read
            why = f"cannot read the fault journal: {exc.strerror}"
            raise InputError(str(self.path), why) from None
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
        record=unseal_record(record),
        utc=_str_field(obj, "utc", where),
        pid_create_time=float(created) if isinstance(created, int | float) else None,
    )


# -- secrets in a record ---------------------------------------------------------------------


class UnresolvedRecord(Mapping[str, Any]):
    """A journaled record that cannot be rebuilt here: an environment variable that held one
    of its secrets is not set. Reading anything of it raises :class:`FaultError` saying which
    to set, so that a revert fails (and its entry stays open) before it acts on a masked value.
    """

    def __init__(self, message: str) -> None:
        self.message = message

    def __getitem__(self, key: str) -> Any:
        raise FaultError(self.message)

    def __iter__(self) -> Iterator[str]:
        raise FaultError(self.message)

    def __len__(self) -> int:
        raise FaultError(self.message)

    def __repr__(self) -> str:
        return f"UnresolvedRecord({self.message!r})"


def seal_record(
    record: Mapping[str, Any], kind: str = "fault", environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``record`` as the journal writes it: every string that holds a secret replaced by its
    parts, each secret a reference to the environment variable (of ``environ``, default this
    process's) whose value covers it. The secrets found are registered
    (:func:`drdrill.redact.register_secret`): masked wherever else they show.

    :class:`FaultError` naming where (``target.argv[3]``, never the value) when a secret has
    no such variable.
    """
    env = os.environ if environ is None else environ
    sealed = _seal(record, "", env, whole=False, prefer=None, kind=kind)
    assert isinstance(sealed, dict)
    return sealed


def _seal(
    value: Any, path: str, environ: Mapping[str, str], *, whole: bool, prefer: str | None, kind: str
) -> Any:
    if isinstance(value, str):
        return _seal_text(value, path, environ, whole=whole, prefer=prefer, kind=kind)
    if isinstance(value, Mapping):
        if SEALED_KEY in value:
            raise FaultError(f"{kind}: record key {SEALED_KEY!r} at {path or 'top'} is reserved")
        # a process's environment additions: a secret-named variable is a secret whole
        additions = path.rsplit(".", 1)[-1] == "env"
        return {
            key: _seal(
                item,
                f"{path}.{key}" if path else str(key),
                environ,
                whole=additions and isinstance(key, str) and is_secret_key(key),
                prefer=str(key) if additions else None,
                kind=kind,
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            _seal(item, f"{path}[{i}]", environ, whole=False, prefer=None, kind=kind)
            for i, item in enumerate(value)
        ]
    return value


def _seal_text(
    text: str, path: str, environ: Mapping[str, str], *, whole: bool, prefer: str | None, kind: str
) -> str | dict[str, Any]:
    spans = [(0, len(text))] if whole and text else secret_spans(text)
    if not spans:
        return text
    # secrets from now on wherever they show (the fault's description, the run's reports)
    register_secrets(text[start:end] for start, end in spans)
    # the tightest variable first; of equal ones, the one the value is set as, then by name
    candidates = sorted(
        ((value, name) for name, value in environ.items() if value and value in text),
        key=lambda c: (len(c[0]), c[1] != prefer, c[1]),
    )
    chosen: list[tuple[int, int, str]] = []
    for start, end in spans:
        if any(s <= start and end <= e for s, e, _ in chosen):
            continue
        found = _covering(text, start, end, candidates, chosen)
        if found is None:
            raise FaultError(
                f"{kind}: its undo record holds a secret at {path} that the journal must not "
                "store, and no environment variable of this process holds it; fault not "
                "injected (give the secret to the drill in an environment variable: the "
                "journal then names the variable, and drdrill recover reads it)"
            )
        chosen.append(found)
    chosen.sort()
    parts: list[str | dict[str, str]] = []
    masked: list[str] = []
    last = 0
    for start, end, name in chosen:
        parts += [text[last:start], {ENV_REF_KEY: name}]
        masked += [text[last:start], MASK]
        last = end
    parts.append(text[last:])
    masked.append(text[last:])
    shown = "".join(masked)
    if redact(shown) != shown:  # pragma: no cover - every span is covered by construction
        raise FaultError(f"{kind}: a secret at {path} is left after sealing; fault not injected")
    return {SEALED_KEY: [p for p in parts if p != ""]}


def _covering(
    text: str,
    start: int,
    end: int,
    candidates: Sequence[tuple[str, str]],
    chosen: Sequence[tuple[int, int, str]],
) -> tuple[int, int, str] | None:
    """An occurrence of a variable's value in ``text`` that covers ``[start, end)`` and
    overlaps no occurrence already chosen."""
    for value, name in candidates:
        at = text.find(value, max(0, end - len(value)))
        while at != -1 and at <= start:
            stop = at + len(value)
            if stop >= end and not any(at < e and s < stop for s, e, _ in chosen):
                return at, stop, name
            at = text.find(value, at + 1)
    return None


def unseal_record(
    record: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Mapping[str, Any]:
    """The record a fault is rebuilt from: each sealed string put back together from
    ``environ`` (default this process's), its secrets registered for redaction. An
    :class:`UnresolvedRecord` when a variable it names is not set."""
    env = os.environ if environ is None else environ
    missing: list[str] = []
    resolved = _unseal(record, "", env, missing)
    if missing:
        names = ", ".join(missing)
        return UnresolvedRecord(
            f"its undo needs the environment variable {names}, which held a secret when the "
            "fault was injected (the journal names it, not the secret); set it as the drill "
            "had it and run drdrill recover again"
        )
    assert isinstance(resolved, dict)
    return resolved


def _unseal(value: Any, path: str, environ: Mapping[str, str], missing: list[str]) -> Any:
    if isinstance(value, dict):
        parts = value.get(SEALED_KEY)
        if len(value) == 1 and isinstance(parts, list):
            return _unseal_text(parts, path, environ, missing)
        return {
            key: _unseal(item, f"{path}.{key}" if path else str(key), environ, missing)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_unseal(item, f"{path}[{i}]", environ, missing) for i, item in enumerate(value)]
    return value


def _unseal_text(
    parts: list[Any], path: str, environ: Mapping[str, str], missing: list[str]
) -> str:
    text: list[str] = []
    for part in parts:
        if isinstance(part, str):
            text.append(part)
            continue
        name = part.get(ENV_REF_KEY) if isinstance(part, dict) else None
        value = environ.get(name) if isinstance(name, str) else None
        if value is None:
            missing.append(f"${name} (for {path})" if isinstance(name, str) else f"? ({path})")
            continue
        register_secret(value)  # a secret once more: masked in whatever recover prints
        text.append(value)
    return "".join(text)
