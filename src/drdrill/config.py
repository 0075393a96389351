"""The stack config (``drdrill.yaml``): validated at the edge, typed inside.

Every error names the file, the line and the key, in one line: ``drdrill.yaml:12: probes.interval:
...``. Durations may be written as numbers of seconds or as text ("2 minutes", "90s").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from drdrill.defaults import DEFAULT_CONFIG, DEFAULT_MIN_OUTAGE_S
from drdrill.errors import ConfigError, DurationError
from drdrill.files import not_a_regular_file
from drdrill.objectives import MAX_SCALE, checked_scale
from drdrill.redact import is_secret_key, register_secrets
from drdrill.urls import url_problem


def _to_seconds(value: object) -> object:
    """Durations in the config: a number of seconds, or text the runbook parser understands."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
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


Seconds = Annotated[float, BeforeValidator(_to_seconds), Field(ge=0)]
#: a duration that must be finite (``.inf`` would make every figure under it)
FiniteSeconds = Annotated[float, BeforeValidator(_to_seconds), Field(ge=0, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _usable_url(value: str) -> str:
    problem = url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: an http(s) URL with a usable host and port (:func:`drdrill.urls.url_problem`)
UsableUrl = Annotated[str, AfterValidator(_usable_url)]


class EndpointConfig(_Model):
    """One endpoint the probes sample, with what makes a sample good."""

    url: UsableUrl
    name: str | None = None
    expect_status: int | list[int] = 200
    body_contains: str | None = None
    body_matches: str | None = None
    json_field: str | None = None
    json_equals: Any = None
    timeout: Seconds | None = None


class ProbesConfig(_Model):
    """Continuous probes: how often, how patient, what counts as recovered."""

    interval: Seconds = 0.1
    timeout: Seconds = 1.0
    recovery_samples: int = Field(default=3, ge=1)
    endpoints: list[EndpointConfig] = Field(default_factory=list)

    @field_validator("interval")
    @classmethod
    def _interval_floor(cls, value: float) -> float:
        if value < 0.01:
            raise ValueError(f"interval {value:g} s is below the 0.01 s floor")
        return value


class MySqlConfig(_Model):
    """A direct database connection for the RPO writer or the verifier."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "app"
    password: str = ""
    database: str = "app"


class WriterConfig(_Model):
    """The RPO marker writer."""

    sink: Literal["http", "mysql"] = "http"
    url: UsableUrl | None = None
    rate_hz: float = Field(default=20.0, gt=0, le=1000)
    timeout: Seconds = 1.0
    mysql: MySqlConfig | None = None


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
    restore_timeout: Seconds = 60.0
    #: good probe samples in a row every endpoint must show before a fault (steady state)
    steady_samples: int = Field(default=5, ge=1, le=1000)
    #: a fault whose effect is not observed within this is a fault with no effect
    effect_timeout: Seconds = 10.0
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
    min_outage: FiniteSeconds = DEFAULT_MIN_OUTAGE_S


class DrillConfig(_Model):
    """A whole stack description."""

    path: Path = Field(default=Path(DEFAULT_CONFIG), exclude=True)
    runbook: Path | None = None
    target: str = "local"
    objectives: ObjectivesConfig = Field(default_factory=ObjectivesConfig)
    probes: ProbesConfig = Field(default_factory=ProbesConfig)
    writer: WriterConfig = Field(default_factory=WriterConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    journal: Path = Path(".drdrill/journal.jsonl")
    report_dir: Path = Path("reports")
    report: ReportConfig = Field(default_factory=lambda: ReportConfig())
    #: the run history (SQLite) each run is appended to, for ``drdrill history|compliance``;
    #: by default ``history.sqlite`` in the report folder the run writes to
    history: Path | None = None
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: parameters of the suites themselves (e.g. the availability a drill must keep)
    drills: DrillsConfig = Field(default_factory=lambda: DrillsConfig())
    #: runbook row -> drill phase, for runbooks that name their rows differently
    #: (``"Database Promotion": "RDS Promotion"``); every row named must be in the runbook
    phases: dict[str, str] = Field(default_factory=dict)
    compliance: ComplianceConfig = Field(default_factory=lambda: ComplianceConfig())

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


def load_config(path: Path | str) -> DrillConfig:
    """Read and validate a stack config; ConfigError names the file, line and key on bad input."""
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
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> DrillConfig:
    """Validate config text that came from ``path``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid yaml"
        raise ConfigError(f"{path}{line}", str(problem)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1", "the config must be a mapping of keys to values")
    if "path" in data:
        raise ConfigError(f"{path}{_line(node, ('path',))}", "path: unknown key")
    # before validation: an error line may quote a value
    register_secrets(_secret_values(data))
    try:
        return DrillConfig.model_validate({**data, "path": path})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        key = ".".join(str(p) for p in loc) or "(top)"
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"].endswith("_type") or first["type"].endswith("_parsing"):
            message = f"{message} (got {first['input']!r})"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        raise ConfigError(f"{path}{_line(node, loc)}", f"{key}: {message}") from None


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
