"""A runbook's RTO/RPO tables -> :class:`Objectives`, the targets a drill is measured against.

The RTO table is the first markdown table in the section of a heading that reads "Recovery Time
Objective(s)" or "RTO" once emoji (real or mis-encoded), numbering and punctuation are dropped;
the RPO table likewise for "Recovery Point Objective(s)" / "RPO". Tables elsewhere (an
escalation matrix with a "Response Time" column, say) are never read. Decisions:

- A runbook without an RTO table is an error; without an RPO table it has no RPO objectives
  (``rpo`` is empty): a team may measure recovery time before it can measure data loss.
- A table is a GitHub-flavoured one: a header row, then an alignment row (``|---|:--:|``).
  Outer pipes are optional, ``\\|`` is a literal pipe, ``**bold**`` is dropped from cells.
- Every row must have as many cells as the header (markdown renderers pad silently; a short row
  in an objectives table is almost always a slip worth pointing at).
- Component names are kept as written ("Total RTO"); lookups ignore case and spacing.
- Headings and tables inside fenced code blocks are not markdown structure and are skipped.
- A target is a positive duration of at least :data:`MIN_TARGET_S` (1 ms), or "N/A" for none;
  "0 minutes" and "0.0001 ms" are refused. "Real-time" is the one way to write 0 s (a documented
  reading, which no measured lag meets: see docs/static-assets.md). Scaling (``--scale``,
  ``objectives.scale``) may take a target below 1 ms; it is a deliberate speed-up.
- Every pass over the text is linear in its length (no regex here backtracks over a line), and
  error lines quote at most 80 characters of a cell or heading (:func:`drdrill.errors.quote`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from drdrill.durations import duration_seconds, is_real_time
from drdrill.errors import ConfigError, DurationError, RunbookError, quote
from drdrill.files import not_a_regular_file

Kind = Literal["rto", "rpo"]

KINDS: Final[tuple[Kind, ...]] = ("rto", "rpo")

#: what each kind is called in headings and messages.
_LONG_NAMES: Final[dict[Kind, tuple[str, ...]]] = {
    "rto": ("recovery", "time"),
    "rpo": ("recovery", "point"),
}
_TITLES: Final[dict[Kind, str]] = {
    "rto": "recovery time objectives",
    "rpo": "recovery point objectives",
}
# Words a heading may add after the name without changing what the section is ("RTO Targets").
_HEADING_FILLER: Final = frozenset({"target", "targets", "table", "summary"})
# Header names that mark the component column when it is not the first one.
_COMPONENT_HEADERS: Final = (
    "component",
    "data type",
    "phase",
    "service",
    "system",
    "step",
    "stage",
    "data",
)

# Only the opening of an ATX heading: the text and its closing "###" are cut with str methods
# (:func:`_atx_heading`). One regex doing all three backtracked on a run of spaces inside the
# text (quadratic: 20,000 spaces took seconds, a 1 MiB heading line never finished).
_ATX_OPENING: Final = re.compile(r" {0,3}(#{1,6})(?=[ \t]|\Z)")
_FENCE: Final = re.compile(r"^ {0,3}(`{3,}|~{3,})")
#: the largest scale factor taken (``--scale``, ``objectives.scale``): a year's target scaled
#: by it stays finite, and a larger factor is a typo
MAX_SCALE: Final = 1000.0
#: the smallest scale factor taken: it makes a year 32 s and a 15-minute RTO 0.9 ms; a smaller
#: factor is a typo (``--scale 1e-320`` gave targets of 1e-318 s)
MIN_SCALE: Final = 1e-6
#: the smallest target a runbook or config may give (other than "Real-time", 0 s): the finest
#: unit the duration parser reads; a drill measures nothing that fine
MIN_TARGET_S: Final = 0.001
_ALIGNMENT_CELL: Final = re.compile(r"^:?-+:?$")
#: what ends a line: nothing else (a form feed or U+2028 inside a line keeps line numbers right)
_LINE_END: Final = re.compile(r"\r\n|\r|\n")
#: a line that starts another block and so ends a table (a quote, a list item, HTML)
_BLOCK_START: Final = re.compile(r"^ {0,3}(?:>|[*+-][ \t]|\d{1,9}[.)][ \t]|<)")


@dataclass(frozen=True)
class Objective:
    """One row of an objectives table: a component's target, and what the runbook says it did."""

    kind: Kind
    component: str
    target_s: float | None
    target_text: str
    actual: str | None
    notes: str
    source: str


@dataclass(frozen=True)
class Objectives:
    """The RTO and RPO objectives of one runbook, each ordered as in its table.

    ``scale`` is the product of every :meth:`scaled` factor applied, 1.0 for the runbook as is.
    """

    rto: Mapping[str, Objective]
    rpo: Mapping[str, Objective]
    source: str
    scale: float = 1.0

    def __post_init__(self) -> None:
        # Read-only copies, so a frozen Objectives cannot change under a caller holding it.
        object.__setattr__(self, "rto", MappingProxyType(dict(self.rto)))
        object.__setattr__(self, "rpo", MappingProxyType(dict(self.rpo)))

    def _table(self, kind: Kind) -> Mapping[str, Objective]:
        if kind == "rto":
            return self.rto
        if kind == "rpo":
            return self.rpo
        raise ValueError(f"unknown objective kind {kind!r} (expected 'rto' or 'rpo')")

    def get(self, kind: Kind, component: str) -> Objective | None:
        """The objective for ``component`` (case and spacing ignored), or None if there is none."""
        wanted = _fold(component)
        # A linear scan: tables have a handful of rows, and names are kept as written.
        return next((obj for name, obj in self._table(kind).items() if _fold(name) == wanted), None)

    def scaled(self, factor: float) -> Objectives:
        """Every target multiplied by ``factor`` (from :data:`MIN_SCALE` to :data:`MAX_SCALE`),
        e.g. 0.1 for a fast sandbox run."""
        checked_scale(factor)

        def scale(table: Mapping[str, Objective]) -> dict[str, Objective]:
            return {
                name: replace(obj, target_s=None if obj.target_s is None else obj.target_s * factor)
                for name, obj in table.items()
            }

        return Objectives(
            rto=scale(self.rto), rpo=scale(self.rpo), source=self.source, scale=self.scale * factor
        )

    def with_overrides(
        self,
        rto: Mapping[str, str | float | int | None],
        rpo: Mapping[str, str | float | int | None],
        where: str,
    ) -> Objectives:
        """Targets replaced from a config file (``where`` names it); unknown components are added.

        A number is seconds, a string is a duration ("2 minutes"), None or "N/A" means no target.
        Overrides are taken as written, not multiplied by an earlier :meth:`scaled` factor; call
        ``scaled`` after ``with_overrides`` to scale them too.
        """
        return Objectives(
            rto=self._override("rto", rto, where),
            rpo=self._override("rpo", rpo, where),
            source=self.source,
            scale=self.scale,
        )

    def _override(
        self, kind: Kind, overrides: Mapping[str, str | float | int | None], where: str
    ) -> dict[str, Objective]:
        table = dict(self._table(kind))
        seen: dict[str, str] = {}
        for raw_key, value in overrides.items():
            key = " ".join(str(raw_key).replace("**", "").split())
            key_where = f"{where}: objectives.{kind}.{quote(key)}"
            if not key:
                raise ConfigError(f"{where}: objectives.{kind}", "empty component name")
            if _fold(key) in seen:
                raise ConfigError(
                    key_where, f"component given twice (also as '{quote(seen[_fold(key)])}')"
                )
            seen[_fold(key)] = key
            target_s = target_seconds(value, key_where)
            target_text = "N/A" if value is None else str(value)
            existing = self.get(kind, key)
            if existing is None:
                table[key] = Objective(kind, key, target_s, target_text, None, "", key_where)
            else:
                table[existing.component] = replace(
                    existing, target_s=target_s, target_text=target_text, source=key_where
                )
        return table

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: ``{"rto": {component: {target_s, actual, notes}}, "rpo": {...}}``."""
        return {
            kind: {
                name: {"target_s": obj.target_s, "actual": obj.actual, "notes": obj.notes}
                for name, obj in self._table(kind).items()
            }
            for kind in KINDS
        }


def scale_problem(factor: float) -> str | None:
    """Why ``factor`` is no scale factor, or None: it must be a finite number from
    :data:`MIN_SCALE` to :data:`MAX_SCALE`. Callers add what was given ("got '0'")."""
    if not (math.isfinite(factor) and 0 < factor <= MAX_SCALE):
        return f"scale factor must be a number > 0 and <= {MAX_SCALE:g}"
    if factor < MIN_SCALE:
        return f"scale factor must be at least {MIN_SCALE:g}"
    return None


def checked_scale(factor: float) -> float:
    """``factor`` if it is a scale factor (:func:`scale_problem`), else ValueError saying why:
    :meth:`Objectives.scaled` and the config's ``objectives.scale`` take it."""
    problem = scale_problem(factor)
    if problem is not None:
        raise ValueError(f"{problem}, got {factor!r}")
    return factor


def target_seconds(value: str | float | int | None, where: str) -> float | None:
    """A target's seconds from a runbook cell or a config value (:func:`duration_seconds`):
    None for "N/A", 0 for "Real-time", else at least :data:`MIN_TARGET_S`.

    A zero or sub-millisecond target ("0 minutes", "0.0001 ms", a config's ``0``) is a
    :class:`DurationError` naming ``where``: no drill meets it, and "N/A" says "no objective".
    A config's "Real-time" reaches this as the number 0 and is refused too: an override is
    there to hold a row to a figure.
    """
    seconds = duration_seconds(value, where)
    if seconds is None or seconds >= MIN_TARGET_S:
        return seconds
    if isinstance(value, str) and is_real_time(value):
        return 0.0
    shown = f"'{quote(' '.join(value.split()))}'" if isinstance(value, str) else f"{value!r} s"
    if seconds == 0:
        reason = "is zero, which no drill meets"
    else:
        reason = f"is under {MIN_TARGET_S * 1000:g} ms, finer than any drill measures"
    raise DurationError(where, f"target {shown} {reason} (write 'N/A' for no objective)")


def read_runbook(path: Path) -> str:
    """A runbook's text; RunbookError naming ``path`` when it cannot be read as UTF-8."""
    source = str(path)
    odd = not_a_regular_file(path)
    if odd is not None:
        raise RunbookError(source, f"runbook {odd}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RunbookError(source, f"runbook is not utf-8 text (byte {exc.start})") from exc
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise RunbookError(source, f"cannot read runbook: {reason}") from exc


def parse_runbook(path: Path) -> Objectives:
    """The objectives in the runbook at ``path``; errors name ``path`` as given, with a line."""
    return parse_runbook_text(read_runbook(path), str(path))


def parse_runbook_text(text: str, source: str) -> Objectives:
    """The objectives in runbook ``text``; ``source`` names it in errors ("runbook.md:187")."""
    lines = _LINE_END.split(text.removeprefix("\ufeff"))
    if lines and lines[-1] == "":
        lines.pop()  # the last line's end
    blocks = list(_scan(lines))
    rto = _objectives_table(blocks, "rto", source)
    if rto is None:
        raise RunbookError(source, "no recovery time objectives table found")
    rpo = _objectives_table(blocks, "rpo", source)
    return Objectives(
        rto=_read_table(rto, "rto", source),
        rpo={} if rpo is None else _read_table(rpo, "rpo", source),
        source=source,
    )


@dataclass(frozen=True)
class _Row:
    line: int
    cells: tuple[str, ...]


@dataclass(frozen=True)
class _Table:
    header: _Row
    alignment: _Row
    rows: tuple[_Row, ...]


@dataclass(frozen=True)
class _Heading:
    line: int
    level: int
    text: str


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


def _clean_cell(cell: str) -> str:
    text = cell.replace("**", "")
    # __bold__ only when it wraps the cell: a double underscore inside a name may be literal.
    if len(text) > 4 and text.startswith("__") and text.endswith("__"):
        text = text[2:-2]
    return " ".join(text.split())


def _split_row(line: str) -> tuple[str, ...]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    if "\\|" not in body:  # the common case: one str.split
        return tuple(cell.strip() for cell in body.split("|"))
    # "\\|" is a literal pipe: split on it first (left to right, as a scan would), then on the
    # other pipes; str.split keeps this linear and fast on a megabyte-long cell.
    cells: list[list[str]] = [[]]
    for index, piece in enumerate(body.split("\\|")):
        first, *rest = piece.split("|")
        if index:
            cells[-1].append("|")
        cells[-1].append(first)
        cells.extend([part] for part in rest)
    return tuple("".join(parts).strip() for parts in cells)


def _atx_heading(line: str) -> tuple[int, str] | None:
    """(level, text) of an ATX heading line ("## Recovery Time Objectives ##"), or None.

    CommonMark: up to 3 spaces, 1 to 6 "#", then a space, a tab or the end of the line; the
    optional closing run of "#" counts only after a space or a tab ("## C#" keeps its "#").
    Linear in the line's length: a regex takes the opening, str methods the rest.
    """
    opening = _ATX_OPENING.match(line)
    if opening is None:
        return None
    text = line[opening.end() :].strip(" \t")
    unclosed = text.rstrip("#")
    if not unclosed or unclosed[-1] in " \t":
        text = unclosed.rstrip(" \t")
    return len(opening.group(1)), text


def _is_alignment_row(line: str) -> bool:
    # Only pipes, dashes, colons and spaces can make one: other lines need no splitting.
    if "|" not in line or line.strip(" \t|:-"):
        return False
    cells = _split_row(line)
    return all(_ALIGNMENT_CELL.match(cell.replace(" ", "")) for cell in cells)


def _scan(lines: list[str]) -> Iterator[_Heading | _Table]:
    """Headings and tables in document order, as markdown renders them: fenced and indented
    code blocks and HTML comments are skipped. A table runs to the first blank line or the
    start of another block; a line in it without a pipe is a row (with one cell) as in GFM,
    so a row that lost its pipes is an error naming its line, not the table's silent end."""
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("<!--"):
            while i < len(lines) and "-->" not in lines[i]:
                i += 1
            i += 1
            continue
        if line.startswith(("    ", "\t")):  # an indented code block (or its continuation)
            i += 1
            continue
        fence_match = _FENCE.match(line)
        if fence is not None:
            # A fence closes on a line of the same character, at least as long, and nothing else.
            closing = line.strip()
            if fence_match and set(closing) == {fence[0]} and len(closing) >= len(fence):
                fence = None
            i += 1
            continue
        if fence_match:
            fence = fence_match.group(1)
            i += 1
            continue
        heading = _atx_heading(line)
        if heading is not None:
            yield _Heading(i + 1, *heading)
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and _is_alignment_row(lines[i + 1]):
            header = _Row(i + 1, _split_row(line))
            alignment = _Row(i + 2, _split_row(lines[i + 1]))
            rows: list[_Row] = []
            i += 2
            # A table runs to the first blank line or the start of another block.
            while (
                i < len(lines)
                and lines[i].strip()
                and not _FENCE.match(lines[i])
                and _atx_heading(lines[i]) is None
                and not _BLOCK_START.match(lines[i])
            ):
                rows.append(_Row(i + 1, _split_row(lines[i])))
                i += 1
            yield _Table(header, alignment, tuple(rows))
            continue
        i += 1


def _heading_kind(text: str) -> Kind | None:
    """Which objectives a heading announces, if any: emoji, numbering and punctuation ignored."""
    # Emoji, and emoji mis-decoded as cp1252 (mojibake), are all non-ASCII: every byte of a
    # multi-byte UTF-8 sequence is >= 0x80, so no mis-decoding yields ASCII. Drop them all.
    ascii_text = text.encode("ascii", "ignore").decode("ascii").lower()
    words = re.sub(r"[^a-z0-9]+", " ", ascii_text).split()
    while words and words[0].isdigit():  # section numbering: "5.", "5.1"
        words.pop(0)
    for kind in KINDS:
        rest = [word for word in words if word not in (kind, kind + "s")]
        named_short = len(rest) < len(words)
        while rest and rest[-1] in _HEADING_FILLER:
            rest.pop()
        long = list(_LONG_NAMES[kind])
        if (not rest and named_short) or rest in (
            [*long, "objective"],
            [*long, "objectives"],
        ):
            return kind
    return None


def _objectives_table(blocks: list[_Heading | _Table], kind: Kind, source: str) -> _Table | None:
    """The first table in the section of the first heading of ``kind`` that has one."""
    first_heading: _Heading | None = None
    for start, block in enumerate(blocks):
        if not isinstance(block, _Heading) or _heading_kind(block.text) != kind:
            continue
        first_heading = first_heading or block
        for inner in blocks[start + 1 :]:
            if isinstance(inner, _Heading) and inner.level <= block.level:
                break
            if isinstance(inner, _Table):
                return inner
    if first_heading is not None:
        raise RunbookError(
            f"{source}:{first_heading.line}",
            f"no table under heading '{quote(_clean_cell(first_heading.text))}'",
        )
    return None


def _column(headers: list[str], *needles: str) -> int | None:
    for needle in needles:
        for index, header in enumerate(headers):
            if needle in header:
                return index
    return None


def _read_table(table: _Table, kind: Kind, source: str) -> dict[str, Objective]:
    title = _TITLES[kind]
    header_where = f"{source}:{table.header.line}"
    width = len(table.header.cells)
    if len(table.alignment.cells) != width:
        raise RunbookError(
            f"{source}:{table.alignment.line}",
            f"alignment row has {len(table.alignment.cells)} cells, header has {width}",
        )
    names = [_clean_cell(cell) for cell in table.header.cells]
    if width < 2:
        raise RunbookError(header_where, f"{title} table needs a component and a target column")
    headers = [name.lower() for name in names]
    target = _column(headers, "target")
    if target is None:
        raise RunbookError(
            header_where,
            f"{title} table has no target column (columns: {quote(', '.join(names))})",
        )
    component = next(
        (
            index
            for index, header in enumerate(headers)
            if index != target and header in _COMPONENT_HEADERS
        ),
        0 if target != 0 else 1,
    )
    actual = _column(headers, "actual")
    notes = _column(headers, "notes", "note")
    if not table.rows:
        raise RunbookError(header_where, f"{title} table has no rows")
    objectives: dict[str, Objective] = {}
    first_line: dict[str, int] = {}
    for row in table.rows:
        where = f"{source}:{row.line}"
        if len(row.cells) != width:
            raise RunbookError(where, f"row has {len(row.cells)} cells, header has {width}")
        cells = [_clean_cell(cell) for cell in row.cells]
        name = cells[component]
        if not name:
            raise RunbookError(
                where, f"row has no {quote(names[component].lower()) or 'component'}"
            )
        if _fold(name) in first_line:
            raise RunbookError(
                where,
                f"component '{quote(name)}' given twice (first at line {first_line[_fold(name)]})",
            )
        first_line[_fold(name)] = row.line
        objectives[name] = Objective(
            kind=kind,
            component=name,
            target_s=target_seconds(cells[target], where),
            target_text=cells[target],
            actual=(cells[actual] or None) if actual is not None else None,
            notes=cells[notes] if notes is not None else "",
            source=where,
        )
    return objectives
