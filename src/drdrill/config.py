"""The stack config (``drdrill.yaml``): validated at the edge, typed inside.

Every error names the file, the line and the key, in one line: ``drdrill.yaml:12: probes.interval:
...``. Durations may be written as numbers of seconds or as text ("2 minutes", "90s").

The whole file is checked before anything starts (:func:`load_config`): a key given twice, an
unknown key at any depth (in every ``targets.*`` section too), a boolean where a number is due
(or a number where a boolean is), a duration that is infinite or must be longer than zero, an
HTTP status, a regular expression, a port, and the paths a run writes to (``journal``,
``report_dir``, ``history``) that could not be created.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import re
import tempfile
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drdrill.defaults import DEFAULT_CONFIG, DEFAULT_MIN_OUTAGE_S
from drdrill.durations import MAX_DURATION_S
from drdrill.errors import ConfigError, DurationError
from drdrill.files import not_a_regular_file
from drdrill.objectives import MAX_SCALE, checked_scale
from drdrill.redact import is_secret_key, register_secrets
from drdrill.targets import EXTRAS, TARGETS
from drdrill.urls import url_problem


def _to_seconds(value: object) -> object:
    """Durations in the config: a number of seconds, or text the runbook parser understands."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("not a finite number: nan")
    if isinstance(value, str):
        from drdrill.durations import parse_duration

        try:
            seconds = parse_duration(value, "config")
        except DurationError as exc:
            raise ValueError(exc.message) from exc
        if seconds is None:
            raise ValueError(f"'{value}' is not a duration")
        return seconds
    return value


def _at_most_a_year(value: float) -> float:
    """No duration in a config is longer than a year (as no runbook duration is)."""
    if value > MAX_DURATION_S:
        raise ValueError(f"duration {value:g} s is over a year")
    return value


#: a duration that may be zero (a delay, an objective, a merge threshold): finite, at most a
#: year; a number of seconds or text ("2 minutes"), never a boolean
Seconds = Annotated[
    float,
    BeforeValidator(_to_seconds),
    Field(ge=0, allow_inf_nan=False),
    AfterValidator(_at_most_a_year),
]
#: the same (the name it was introduced under: ``.inf`` would make every figure under it)
FiniteSeconds = Seconds
#: a duration that must be longer than zero (a timeout, an interval, a period): a timeout of
#: 0 fails every request, an interval of 0 spins
PositiveSeconds = Annotated[
    float,
    BeforeValidator(_to_seconds),
    Field(gt=0, allow_inf_nan=False),
    AfterValidator(_at_most_a_year),
]


def _path_text(value: object) -> object:
    """An empty path is a slip: ``Path("")`` is the current folder, where no file can go."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("empty path")
    return value


#: a path in a config, as text (relative ones are relative to the config file's folder); lax
#: even in a strict model (YAML gives text, never a Path), never empty
ConfigPath = Annotated[Path, BeforeValidator(_path_text), Strict(False)]
#: a TCP or UDP port (0 is no port a config can name)
Port = Annotated[int, Field(ge=1, le=65535)]


class _Model(BaseModel):
    #: strict: a boolean is no number and a number no boolean (``rate_hz: true``,
    #: ``accept_inconclusive: 1``); an int is still a float; every float field is bounded (or
    #: a duration), so ``.inf`` and ``.nan`` are refused too
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _usable_url(value: str) -> str:
    problem = url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: an http(s) URL with a usable host and port (:func:`drdrill.urls.url_problem`)
UsableUrl = Annotated[str, AfterValidator(_usable_url)]


def _http_statuses(value: object) -> object:
    """One status or a non-empty list of them, each an integer from 100 to 599."""
    codes = value if isinstance(value, list) else [value]
    if not codes:
        raise ValueError("empty list: give at least one accepted status")
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int):
            raise ValueError(f"not an HTTP status: {code!r}")
        if not 100 <= code <= 599:
            raise ValueError(f"{code} is not an HTTP status (100-599)")
    return value


#: the accepted status of a response, or a list of them
HttpStatuses = Annotated[int | list[int], BeforeValidator(_http_statuses)]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
    return value


#: a regular expression (Python's ``re``) that compiles
Regex = Annotated[str, AfterValidator(_regex)]


class EndpointConfig(_Model):
    """One endpoint the probes sample, with what makes a sample good."""

    url: UsableUrl
    name: str | None = None
    expect_status: HttpStatuses = 200
    body_contains: str | None = None
    body_matches: Regex | None = None
    json_field: str | None = Field(default=None, min_length=1)
    json_equals: Any = None
    timeout: PositiveSeconds | None = None

    @model_validator(mode="after")
    def _json_pair(self) -> EndpointConfig:
        if "json_equals" in self.model_fields_set and self.json_field is None:
            raise ValueError("json_equals without json_field: say which field must equal it")
        return self


class ProbesConfig(_Model):
    """Continuous probes: how often, how patient, what counts as recovered."""

    interval: PositiveSeconds = 0.1
    timeout: PositiveSeconds = 1.0
    recovery_samples: int = Field(default=3, ge=1, le=1000)
    endpoints: list[EndpointConfig] = Field(default_factory=list)

    @field_validator("interval")
    @classmethod
    def _interval_floor(cls, value: float) -> float:
        if value < 0.01:
            raise ValueError(f"interval {value:g} s is below the 0.01 s floor")
        return value


class MySqlConfig(_Model):
    """A direct database connection for the RPO writer or the verifier."""

    host: str = Field(default="127.0.0.1", min_length=1)
    port: Port = 3306
    user: str = Field(default="app", min_length=1)
    password: str = ""
    database: str = Field(default="app", min_length=1)


class WriterConfig(_Model):
    """The RPO marker writer."""

    sink: Literal["http", "mysql"] = "http"
    url: UsableUrl | None = None
    rate_hz: float = Field(default=20.0, gt=0, le=1000)
    timeout: PositiveSeconds = 1.0
    #: the database the markers go to; required by ``sink: mysql``
    mysql: MySqlConfig | None = Field(default=None, validate_default=True)

    @field_validator("mysql")
    @classmethod
    def _mysql_for_its_sink(
        cls, value: MySqlConfig | None, info: ValidationInfo
    ) -> MySqlConfig | None:
        if value is None and info.data.get("sink") == "mysql":
            raise ValueError("required when writer.sink is mysql")
        return value


class ObjectivesConfig(_Model):
    """Overrides of single objectives, and a scale factor for fast sandbox runs."""

    #: strict: ``scale: true`` is no number
    scale: Annotated[float, AfterValidator(checked_scale)] = Field(
        default=1.0, gt=0, le=MAX_SCALE, strict=True
    )
    rto: dict[str, Seconds | None] = Field(default_factory=dict)
    rpo: dict[str, Seconds | None] = Field(default_factory=dict)


class SafetyConfig(_Model):
    """Guards before anything destructive runs against a real account."""

    allowed_accounts: list[str] = Field(default_factory=list)
    allowed_regions: list[str] = Field(default_factory=list)


class DrillsConfig(_Model):
    """What the suites expect beyond the runbook's objectives."""

    min_availability: float = Field(default=80.0, ge=0, le=100)
    restore_timeout: PositiveSeconds = 60.0
    #: good probe samples in a row every endpoint must show before a fault (steady state)
    steady_samples: int = Field(default=5, ge=1, le=1000)
    #: a fault whose effect is not observed within this is a fault with no effect
    effect_timeout: PositiveSeconds = 10.0
    #: the simulated on-call's reaction from the alarm to the trigger (script and lambda
    #: triggers): Decision measures it, so it can miss its objective
    oncall_delay: Seconds = 0.0


class ComplianceConfig(_Model):
    """How ``drdrill compliance`` judges runs."""

    #: whether an inconclusive run (a figure whose interval straddles its target) counts as
    #: compliant; by default it does not
    accept_inconclusive: bool = False


class ReportConfig(_Model):
    """How the run's reports are written."""

    #: report.md merges a drill's outages of one endpoint that are shorter than this, their
    #: uncertainty included, into one line with their count, longest and total ("0" lists
    #: every one); report.json always lists each
    min_outage: Seconds = DEFAULT_MIN_OUTAGE_S


class DrillConfig(_Model):
    """A whole stack description."""

    path: Annotated[Path, Strict(False)] = Field(default=Path(DEFAULT_CONFIG), exclude=True)
    runbook: ConfigPath | None = None
    #: the target a run drills unless ``--dr-target`` says otherwise
    target: str = "local"
    objectives: ObjectivesConfig = Field(default_factory=ObjectivesConfig)
    probes: ProbesConfig = Field(default_factory=ProbesConfig)
    writer: WriterConfig = Field(default_factory=WriterConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    journal: ConfigPath = Path(".drdrill/journal.jsonl")
    report_dir: ConfigPath = Path("reports")
    report: ReportConfig = Field(default_factory=lambda: ReportConfig())
    #: the run history (SQLite) each run is appended to, for ``drdrill history|compliance``;
    #: by default ``history.sqlite`` in the report folder the run writes to
    history: ConfigPath | None = None
    #: each target's own section, by target name (validated by that target's settings model:
    #: :data:`TARGET_SECTIONS`)
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: parameters of the suites themselves (e.g. the availability a drill must keep)
    drills: DrillsConfig = Field(default_factory=lambda: DrillsConfig())
    #: runbook row -> drill phase, for runbooks that name their rows differently
    #: (``"Database Promotion": "RDS Promotion"``); every row named must be in the runbook
    phases: dict[str, str] = Field(default_factory=dict)
    compliance: ComplianceConfig = Field(default_factory=lambda: ComplianceConfig())

    @field_validator("target")
    @classmethod
    def _known_target(cls, value: str) -> str:
        if value not in TARGETS:
            raise ValueError(f"unknown target '{value}' (known: {', '.join(sorted(TARGETS))})")
        return value

    @property
    def base_dir(self) -> Path:
        """Relative paths in the config are relative to the config file."""
        return self.path.parent

    def resolve(self, path: Path) -> Path:
        """A config path made absolute against the config file's folder."""
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def history_path(self, report_dir: Path | None = None) -> Path:
        """The history store: the ``history`` key, or ``history.sqlite`` in the report folder."""
        if self.history is not None:
            return self.resolve(self.history)
        return (report_dir or self.resolve(self.report_dir)) / "history.sqlite"

    def target_settings(self, name: str) -> Mapping[str, Any]:
        """The section ``targets.<name>`` (empty when absent)."""
        return self.targets.get(name, {})


#: ``targets.<name>`` -> the model that validates that section ("module:class"), imported only
#: when the section is there; the ``sandbox-aws`` target reads ``targets.sandbox`` and
#: ``targets.aws``
TARGET_SECTIONS: Mapping[str, str] = {
    "local": "drdrill.targets.local:LocalSettings",
    "sandbox": "drdrill.sandbox.settings:SandboxSettings",
    "aws": "drdrill.targets.aws.settings:AwsSettings",
}


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A key given twice in one mapping (PyYAML would silently keep the last)."""

    def __init__(self, key: object, first: yaml.Node, again: yaml.Node) -> None:
        super().__init__(
            None,
            None,
            f"duplicate key (first at line {first.start_mark.line + 1})",
            again.start_mark,
        )
        self.key = key
        self.key_node = again


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key that a mapping gives twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """The mapping; :class:`_DuplicateKey` for a key given twice (merged ``<<`` keys may
        be overridden, as YAML means them to be)."""
        seen: dict[object, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: the constructor refuses it itself
                continue
            if first is not key_node:
                raise _DuplicateKey(key, first, key_node)
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path | str, report_dir: Path | None = None) -> DrillConfig:
    """Read and validate a whole stack config; ConfigError names the file, line and key.

    Beyond :func:`parse_config`: every ``targets.*`` section present is validated by its
    target's settings model, and the paths the run writes to must be creatable
    (:func:`path_problem`: nothing is left behind). ``report_dir`` is the command line's report
    folder (``--dr-report-dir``), checked instead of the config's.
    """
    path = Path(path)
    odd = not_a_regular_file(path)
    if odd is not None:
        raise ConfigError(str(path), f"config {odd}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc}") from None
    config, node = _parse(text, path)
    _check_target_sections(config, node)
    _check_paths(config, node, report_dir)
    return config


def parse_config(text: str, path: Path) -> DrillConfig:
    """Validate config text that came from ``path``: its own keys and values, and the names
    of its target sections (each section's content, and the paths the run writes to, are
    checked by :func:`load_config`, and by each target when it is made)."""
    return _parse(text, path)[0]


def _parse(text: str, path: Path) -> tuple[DrillConfig, yaml.Node]:
    """The config in ``text`` and its YAML tree (for the line numbers of later checks)."""
    loader = _ConfigLoader(text)
    node: yaml.Node | None = None
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except _DuplicateKey as exc:
        keys = _key_path(node, exc.key_node) or [str(exc.key)]
        line = exc.key_node.start_mark.line + 1
        raise ConfigError(f"{path}:{line}", f"{'.'.join(keys)}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid yaml"
        raise ConfigError(f"{path}{line}", str(problem)) from None
    finally:
        loader.dispose()
    if node is None or data is None:
        raise ConfigError(f"{path}:1", "empty config (give at least its target: 'target: local')")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1", "the config must be a mapping of keys to values")
    if "path" in data:
        raise ConfigError(f"{path}{_line(node, ('path',))}", "path: unknown key")
    # before validation: an error line may quote a value
    register_secrets(_secret_values(data))
    try:
        config = DrillConfig.model_validate({**data, "path": path})
    except ValidationError as exc:
        raise _config_error(exc, node, path) from None
    for name in config.targets:
        if name not in TARGET_SECTIONS:
            known = ", ".join(sorted(TARGET_SECTIONS))
            why = (
                f"the {name} target has no section of its own (it reads targets.sandbox and "
                "targets.aws)"
                if name in TARGETS
                else f"unknown target '{name}' (known: {known})"
            )
            raise ConfigError(f"{path}{_line(node, ('targets', name))}", f"targets.{name}: {why}")
    return config, node


def _config_error(
    exc: ValidationError, node: yaml.Node, path: Path, prefix: tuple[str, ...] = ()
) -> ConfigError:
    """The first of pydantic's errors as the loader's one line: ``file:line: key: message``."""
    first = exc.errors()[0]
    loc = (*prefix, *first["loc"])
    key = ".".join(str(p) for p in loc) or "(top)"
    message = first["msg"]
    kind = first["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required"
    elif kind.endswith("_type") or kind.endswith("_parsing"):
        message = f"{message} (got {first['input']!r})"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return ConfigError(f"{path}{_line(node, loc)}", f"{key}: {' '.join(message.split())}")


def _check_target_sections(config: DrillConfig, node: yaml.Node) -> None:
    """Every ``targets.*`` section present, validated by its target's settings model (the
    active target's or not). A section whose model needs an extra that is not installed is
    left to its target, which names the extra when it is chosen."""
    for name, section in config.targets.items():
        module_name, _, attr = TARGET_SECTIONS[name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if str(exc.name).split(".")[0] in EXTRAS:
                continue
            raise
        model: type[BaseModel] = getattr(module, attr)
        try:
            model.model_validate(section)
        except ValidationError as exc:
            raise _config_error(exc, node, config.path, ("targets", name)) from None


def _check_paths(config: DrillConfig, node: yaml.Node, report_dir: Path | None) -> None:
    """ConfigError, naming the key, for a path the run writes to that it could not create."""
    given = {k.value for k, _ in getattr(node, "value", ()) if isinstance(k, yaml.ScalarNode)}

    def refuse(key: str, problem: str) -> ConfigError:
        if key in given:
            return ConfigError(f"{config.path}{_line(node, (key,))}", f"{key}: {problem}")
        return ConfigError(str(config.path), f"{key} (default): {problem}")

    problem = path_problem(config.resolve(config.journal), "file")
    if problem is not None:
        raise refuse("journal", problem)
    if report_dir is not None:
        problem = path_problem(report_dir, "folder")
        if problem is not None:
            raise ConfigError("--dr-report-dir", problem)
    else:
        problem = path_problem(config.resolve(config.report_dir), "folder")
        if problem is not None:
            raise refuse("report_dir", problem)
    if config.history is not None:
        problem = path_problem(config.resolve(config.history), "file")
        if problem is not None:
            raise refuse("history", problem)


def path_problem(path: Path, kind: Literal["file", "folder"]) -> str | None:
    """Why a run could not write ``path``, or None.

    ``file``: a file created (with its missing folders) or appended to; ``folder``: a folder
    created (with its missing parents) that files and folders are then made in. Nothing is
    left behind: where something must be created, a folder is made and removed at once in the
    nearest folder that exists (what the run would create there first), so that a file system
    that refuses (``/proc``, a read-only mount, no permission) says so now.
    """
    try:
        if path.exists():
            if kind == "folder":
                if not path.is_dir():
                    return f"{path} is a file, not a folder"
                return _mkdir_problem(path, path)
            if path.is_dir():
                return f"{path} is a folder, not a file"
            if not path.is_file():
                return f"{path} is not a regular file"
            if not os.access(path, os.R_OK | os.W_OK):
                return f"{path} is not writable"
            return None
        existing = path.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            return f"cannot create {path}: {existing} is a file, not a folder"
        return _mkdir_problem(path, existing)
    except OSError as exc:
        return f"cannot check {path}: {exc.strerror or exc}"


def _mkdir_problem(path: Path, folder: Path) -> str | None:
    """Why nothing can be created in ``folder`` (on the way to ``path``), or None; a probe
    folder is made and removed at once."""
    try:
        probe = tempfile.mkdtemp(prefix=".drdrill-check-", dir=folder)
    except OSError as exc:
        where = "" if folder == path else f" ({folder} takes no new entry)"
        return f"cannot create {'in ' if folder == path else ''}{path}: {exc.strerror}{where}"
    with contextlib.suppress(OSError):
        os.rmdir(probe)
    return None


def _key_path(node: yaml.Node | None, target: yaml.Node) -> list[str] | None:
    """The keys from ``node`` down to the key node ``target`` (list items by index), or None."""
    seen: set[int] = set()

    def walk(current: yaml.Node) -> list[str] | None:
        if id(current) in seen:  # an alias met again
            return None
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if key is target:
                    return [str(key.value)]
                below = walk(value)
                if below is not None:
                    return [str(key.value), *below]
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                below = walk(item)
                if below is not None:
                    return [str(index), *below]
        return None

    return None if node is None else walk(node)


def _secret_values(data: Any) -> Iterator[str]:
    """Every value the config gives under a key that names a secret, at any depth
    (``writer.mysql.password``, ``targets.aws.secret_access_key``, ...)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and is_secret_key(key) and isinstance(value, str | int):
                yield str(value)
            else:
                yield from _secret_values(value)
    elif isinstance(data, list):
        for item in data:
            yield from _secret_values(item)


def _line(node: yaml.Node | None, loc: tuple[Any, ...]) -> str:
    """``:LINE`` of the deepest node the location reaches in the YAML tree, or ''."""
    best: yaml.Node | None = node
    current = node
    for part in loc:
        if isinstance(current, yaml.MappingNode):
            nxt = next(
                (v for k, v in current.value if isinstance(k, yaml.ScalarNode) and k.value == part),
                None,
            )
            key_node = next(
                (k for k, _ in current.value if isinstance(k, yaml.ScalarNode) and k.value == part),
                None,
            )
            if nxt is None:
                break
            best = key_node if not isinstance(nxt, yaml.ScalarNode) else nxt
            current = nxt
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(current.value):
                break
            current = current.value[part]
            best = current
        else:
            break
    if best is None:
        return ""
    return f":{best.start_mark.line + 1}"
