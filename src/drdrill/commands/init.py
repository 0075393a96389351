"""``drdrill init``: a ``drdrill.yaml`` for the AWS target from ``terraform output -json``.

What terraform says is written as values: the outputs examples/aws-visitor-analytics.yaml
documents (``primary_alb_dns``, ``dr_alb_dns``: each region's ALB DNS name, and the region it
names). Everything else is written with a ``# TODO fill:`` comment: the runbook's default name
where settings have one, else ``null``. The safety section is written empty, with a comment on
what to fill: until it is filled every fault is refused, so nothing destructive runs.

The file is checked with drdrill's own config loader before it is written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from drdrill import defaults
from drdrill.errors import ConfigError, InputError
from drdrill.files import not_a_regular_file
from drdrill.targets.base import Region

if TYPE_CHECKING:
    from drdrill.objectives import Objectives

REGIONS: Final[tuple[Region, ...]] = ("primary", "dr")

#: the terraform outputs the example config documents (``terraform output -raw
#: primary_alb_dns``) -> the key of ``targets.aws`` each fills; the AWS target reads the same
#: names at run time when ``alb.dns_name`` is unset (targets/aws/names.py)
OUTPUT_KEYS: Final = MappingProxyType(
    {f"{region}_alb_dns": f"{region}.alb.dns_name" for region in REGIONS}
)
#: the marker on every line whose value drdrill could not learn
TODO: Final = "TODO fill:"
DEFAULT_OUTPUT = Path(defaults.DEFAULT_CONFIG)
#: the comment above the empty safety section
SAFETY_NOTE: Final = (
    "SAFETY: empty on purpose. Every drill that injects a fault refuses to run until it is "
    "filled: a fault (stopping tasks, rebooting the database, a region down) is refused unless "
    "the account the credentials belong to is in allowed_accounts, every region the fault "
    "touches is in allowed_regions, and the run is given --dr-allow-destructive. Name the "
    "account of your DR exercises (never production without a change ticket), e.g."
)

#: the names settings fall back to (targets/aws/settings.py PRIMARY_DEFAULTS, DR_DEFAULTS: the
#: runbook's), repeated here so that ``--help`` does not import pydantic
RUNBOOK_NAMES: Final = MappingProxyType(
    {
        "primary": MappingProxyType(
            {
                "region": "eu-west-1",
                "cluster": "visitor-analytics",
                "service": "visitor-analytics",
                "instance_id": "visitor-analytics-db",
                "health": "visitor-analytics-primary-health",
            }
        ),
        "dr": MappingProxyType(
            {
                "region": "eu-central-1",
                "cluster": "visitor-analytics",
                "service": "visitor-analytics",
                "instance_id": "visitor-analytics-db-replica",
                "health": "visitor-analytics-dr-health",
            }
        ),
    }
)
LAMBDA_NAME: Final = "visitor-analytics-dr-automation"

_DNS_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"
)
#: an ALB's DNS name: ``[internal-]<name>-<id>.<region>.elb.amazonaws.com``
_ALB_REGION = re.compile(r".*\.([a-z]{2}(?:-[a-z]+)+-\d+)\.elb\.amazonaws\.com(?:\.cn)?\.?")
_PLAIN = re.compile(r"[A-Za-z0-9_./@:=+-]+")

DESCRIPTION = (
    "Write a drdrill.yaml for the AWS target (--dr-target aws): each region's ALB DNS name and "
    f"region from terraform's outputs ({', '.join(OUTPUT_KEYS)}), the runbook given, and a "
    f"'# {TODO}' comment on every key drdrill cannot learn. The safety section is written "
    "empty: every fault is refused until it names the account and regions drills may change."
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``init`` sub-command."""
    parser = sub.add_parser(
        "init",
        help="write a drdrill.yaml for the AWS target from terraform's outputs",
        description=DESCRIPTION,
    )
    parser.add_argument(
        "--runbook",
        metavar="RUNBOOK.md",
        type=Path,
        required=True,
        help="the DR runbook whose RTO/RPO tables are the objectives",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--terraform-outputs",
        metavar="FILE",
        type=Path,
        help="a file saved from `terraform output -json`",
    )
    source.add_argument(
        "--terraform-dir",
        metavar="DIR",
        type=Path,
        help="a terraform folder: runs `terraform -chdir=DIR output -json`",
    )
    parser.add_argument(
        "--output",
        metavar="drdrill.yaml",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"the config to write (default: {DEFAULT_OUTPUT})",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing config")
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class RegionFacts:
    """What terraform says of one region of the stack."""

    #: the ALB's DNS name (``<region>_alb_dns``), None when terraform has no such output
    alb_dns: str | None
    #: the AWS region the ALB's DNS name names, None when it names none
    region: str | None


def run(args: argparse.Namespace) -> int:
    """Write the config and say what is left to fill; bad input is one line (exit 2)."""
    from drdrill.objectives import parse_runbook

    output: Path = args.output
    _check_output(output, args.force)
    objectives = parse_runbook(args.runbook)
    if args.terraform_dir is not None:
        outputs, source, setting = _outputs_from_dir(args.terraform_dir)
    else:
        outputs, source, setting = _outputs_from_file(args.terraform_outputs, output)
    facts = region_facts(outputs, source)
    text = render(
        facts,
        objectives,
        runbook=_relative(args.runbook, output),
        terraform_outputs=setting,
        source=source,
        config_name=shlex.quote(str(output)),
    )
    _validate(text, output)
    _write(output, text, args.force)
    todo = sum(TODO in line for line in text.splitlines())
    print(f"drdrill init: wrote {output} from {source} and {args.runbook}")
    print(f"drdrill init: {todo} lines to fill: grep -n '{TODO}' {shlex.quote(str(output))}")
    print(
        "drdrill init: safety is empty: every fault is refused until safety.allowed_accounts "
        "and safety.allowed_regions name the account and regions drills may change"
    )
    return 0


def _check_output(output: Path, force: bool) -> None:
    """Refuse an existing config unless ``force``, and anything but a regular file always."""
    odd = not_a_regular_file(output)
    if odd is not None:
        kind = odd.removesuffix(", not a file to read")
        raise InputError(str(output), f"output {kind}, not a file to write")
    if output.exists() and not force:
        raise InputError(str(output), "already exists: pass --force to overwrite it")
    if not output.resolve().parent.is_dir():
        raise InputError(str(output), "its folder does not exist")


def _outputs_from_file(path: Path, output: Path) -> tuple[dict[str, str], str, str]:
    """The outputs saved in ``path``, its name for messages, and its terraform_outputs value
    (relative to the config's folder, as the config loader resolves it)."""
    from drdrill.targets.aws import terraform

    odd = not_a_regular_file(path)
    if odd is not None:
        raise InputError(str(path), f"terraform outputs file {odd}")
    if not path.exists():
        raise InputError(str(path), "terraform outputs file not found")
    return terraform.outputs(path), str(path), _relative(path, output)


def _outputs_from_dir(folder: Path) -> tuple[dict[str, str], str, str]:
    """The outputs of ``terraform output -json`` run in ``folder``, the command for messages,
    and the same command as the terraform_outputs value. The folder is absolute in it: the
    target runs the command from the working directory of the run."""
    from drdrill.targets.aws import terraform

    if not folder.is_dir():
        raise InputError(str(folder), "no such terraform folder")
    command = f"terraform -chdir={shlex.quote(str(folder.resolve()))}"
    return terraform.outputs(command), f"{command} output -json", command


def region_facts(outputs: Mapping[str, str], source: str) -> dict[Region, RegionFacts]:
    """Each region's ALB DNS name and region from ``outputs`` (of ``source``, named in errors).

    InputError when none of :data:`OUTPUT_KEYS` is there, when one is no DNS name, and when
    both ALBs are in the same region (drdrill drills a stack across two regions).
    """
    if not any(name in outputs for name in OUTPUT_KEYS):
        found = ", ".join(sorted(outputs)[:8]) or "none"
        raise InputError(
            source,
            f"no output drdrill reads ({' or '.join(OUTPUT_KEYS)}); outputs found: {found}",
        )
    facts: dict[Region, RegionFacts] = {}
    for region in REGIONS:
        name = f"{region}_alb_dns"
        value = outputs.get(name)
        if value is None:
            facts[region] = RegionFacts(alb_dns=None, region=None)
            continue
        if not _DNS_NAME.fullmatch(value) or len(value) > 254:
            shown = value if len(value) <= 60 else f"{value[:57]}..."
            raise InputError(f"{source}: {name}", f"not a DNS name: {json.dumps(shown)}")
        match = _ALB_REGION.fullmatch(value.lower())
        facts[region] = RegionFacts(alb_dns=value, region=match.group(1) if match else None)
    primary, dr = facts["primary"].region, facts["dr"].region
    if primary is not None and primary == dr:
        raise InputError(
            source,
            f"primary_alb_dns and dr_alb_dns are both in {primary}: drdrill drills a stack "
            "across two regions",
        )
    return facts


def _relative(path: Path, output: Path) -> str:
    """``path`` as the config at ``output`` names it: relative to its folder, or absolute when
    they share nothing but the root."""
    target = path.resolve()
    folder = output.resolve().parent
    if os.path.commonpath([target, folder]) == target.anchor:
        return str(target)
    return os.path.relpath(target, folder)


def _scalar(value: str | None) -> str:
    """``value`` as a YAML scalar: plain where YAML reads it back as the same text, quoted
    otherwise (``"123456789012"``, ``"yes"``, a path with a space)."""
    import yaml

    if value is None:
        return "null"
    if _PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def _one_line(text: str) -> str:
    """``text`` fit for a comment: no line breaks."""
    return " ".join(text.splitlines())


def _comment(text: str, indent: int) -> list[str]:
    """``text`` as comment lines at ``indent``, wrapped under 100 columns."""
    prefix = " " * indent + "# "
    return textwrap.wrap(text, width=99, initial_indent=prefix, subsequent_indent=prefix)


def _key(indent: int, key: str, value: str, todo: str | None = None) -> str:
    """``key: value`` at ``indent`` (value already YAML), with a TODO comment when given."""
    line = f"{' ' * indent}{key}: {value}"
    return f"{line}  # {TODO} {todo}" if todo else line


def _rows(objectives: Objectives) -> str:
    names = [
        f"{table}: {', '.join(rows)}"
        for table, rows in (("RTO", objectives.rto), ("RPO", objectives.rpo))
        if rows
    ]
    return "; ".join(names)


def render(
    facts: Mapping[Region, RegionFacts],
    objectives: Objectives,
    *,
    runbook: str,
    terraform_outputs: str,
    source: str,
    config_name: str = str(DEFAULT_OUTPUT),
) -> str:
    """The config text: ``facts`` as values, the rest marked ``# TODO fill:``."""
    regions = [facts[r].region or RUNBOOK_NAMES[r]["region"] for r in REGIONS]
    lines = [
        "# drdrill.yaml for the AWS target (--dr-target aws), written by `drdrill init` from",
        f"# `{_one_line(source)}` and the runbook {_one_line(runbook)}.",
        f"# Every line marked `# {TODO}` holds what terraform did not say: the runbook's",
        "# default name (check it is yours) or null (fill it, or leave it unset where its comment",
        "# says so). examples/aws-visitor-analytics.yaml in drdrill's repository explains every",
        "# key. Then look at the plan, which changes nothing:",
        f"#   pytest suites --dr-target aws --dr-config {_one_line(config_name)} --dr-dry-run",
        "",
        "# The runbook whose RTO/RPO tables are the objectives (relative to this file).",
        _key(0, "runbook", _scalar(runbook)),
        "target: aws",
        "",
        "objectives:",
        "  # Real AWS: the runbook's own figures, unscaled.",
        "  scale: 1.0",
        *_comment(
            'Per-row overrides of the runbook\'s targets (seconds, or text like "5 minutes"), '
            f"by the row's name; the runbook's rows are {_rows(objectives)}.",
            2,
        ),
        "  rto: {}",
        "  rpo: {}",
        "",
        "probes:",
        "  interval: 250ms",
        "  timeout: 2s",
        "  recovery_samples: 3",
        "  # Unset: the runbook's checks (/health-simple.php, /, /api.php?action=stats) through",
        "  # targets.aws.route53.record_name, the public failover name users go through.",
        "  endpoints: []",
        "",
        "writer:",
        "  # RPO markers through the app's write endpoint (unset url: targets.aws.write_url, else",
        "  # http://<route53.record_name>/api.php?action=write).",
        "  sink: http",
        "  rate_hz: 5",
        "  timeout: 2s",
        "",
        *_comment(SAFETY_NOTE, 0),
        '#   allowed_accounts: ["123456789012"]',
        f"#   allowed_regions: [{', '.join(regions)}]",
        "safety:",
        _key(2, "allowed_accounts", "[]", "the AWS account ids drills may change"),
        _key(2, "allowed_regions", "[]", f"the regions drills may change ({', '.join(regions)})"),
        "",
        "drills:",
        "  # A drill that stops tasks must keep at least this share of probe samples good.",
        "  min_availability: 80",
        "  # How long a drill's restore (failback to steady state) may take.",
        "  restore_timeout: 20 minutes",
        "",
        "journal: .drdrill/journal.jsonl",
        "report_dir: reports",
        "",
        "targets:",
        "  aws:",
        "    # Where the stack's ids come from: a file of `terraform output -json` (relative to",
        "    # this file), or a command line starting with terraform (run from the run's folder).",
        _key(4, "terraform_outputs", _scalar(terraform_outputs)),
        "    # Credentials: the environment's unless a named profile of ~/.aws/config is given; a",
        "    # role to assume for the run (its policy: docs/iam-policy.json). Both may stay null.",
        _key(4, "profile", "null"),
        _key(4, "role_arn", "null"),
        "    # Unset: boto3's own endpoints (an emulator's url otherwise).",
        _key(4, "endpoint_url", "null"),
        "    scripts:",
        _key(
            6,
            "failover",
            "null",
            "your failover command, e.g. ./scripts/failover.sh --yes",
        ),
        _key(
            6,
            "failback",
            "null",
            "your failback command (failback drill, drdrill exercise)",
        ),
        "    dns:",
        "      # The hosted zone's name servers as addresses (DNS Update as clients see it, TTL",
        "      # honoured); empty: the system resolver.",
        "      name_servers: []",
        "",
        *_region_lines("primary", facts["primary"]),
        "",
        *_region_lines("dr", facts["dr"]),
        "",
        "    route53:",
        _key(6, "zone_name", "null", "the hosted zone's name (or zone_id instead)"),
        _key(
            6,
            "record_name",
            "null",
            "the public failover name users go through",
        ),
        "",
        "    # Part of the safety: each is empty or at its default until you set it.",
        "    blast_radius:",
        "      # No single fault stops more than this share of a service's tasks. A region down",
        "      # takes 100%: the region failover and failback drills and `drdrill exercise` are",
        "      # refused until max_tasks_percent is 100.",
        _key(6, "max_tasks_percent", "50"),
        "    stop_conditions:",
        "      # Alarms that abort a drill and revert its faults when they enter ALARM: names in",
        "      # the primary region or alarm ARNs (each region's own are under alarms.guards).",
        _key(6, "guard_alarms", "[]", "the alarms that must never fire during a drill"),
        _key(
            6,
            "min_availability_percent",
            "null",
            "abort under this % of good probe samples, e.g. 50",
        ),
    ]
    return "\n".join(lines) + "\n"


def _region_lines(key: Region, facts: RegionFacts) -> Iterable[str]:
    """The ``primary`` or ``dr`` section of ``targets.aws``."""
    names = RUNBOOK_NAMES[key]
    output = f"{key}_alb_dns"
    check = "the runbook's default"
    lines = [f"    {key}:"]
    if facts.region is not None:
        lines.append(_key(6, "region", _scalar(facts.region)) + f"  # from {output}")
    else:
        lines.append(
            _key(6, "region", _scalar(names["region"]), f"the {key} region (not in {output})")
        )
    lines += [
        "      ecs:",
        _key(8, "cluster", _scalar(names["cluster"]), f"the ECS cluster ({check})"),
        _key(8, "service", _scalar(names["service"]), f"the ECS service ({check})"),
    ]
    if key == "dr":
        lines.append(
            _key(
                8,
                "scale_to",
                "null",
                "tasks on failover (null: as many as the primary)",
            )
        )
    lines.append("      alb:")
    if facts.alb_dns is not None:
        lines += [
            f"        # terraform output -raw {output}",
            _key(8, "dns_name", _scalar(facts.alb_dns)),
        ]
    else:
        lines.append(
            _key(
                8,
                "dns_name",
                "null",
                f"the ALB's DNS name (terraform has no {output}), or alb.name to look it up",
            )
        )
    lines += [
        _key(8, "target_group_name", "null", "the ALB's target group (or target_group_arn)"),
        "      rds:",
        _key(
            8,
            "instance_id",
            _scalar(names["instance_id"]),
            f"the {'writer' if key == 'primary' else 'read replica'} ({check})",
        ),
    ]
    if key == "primary":
        lines.append(_key(6, "lambda_function", _scalar(LAMBDA_NAME), f"the DR Lambda ({check})"))
    lines += [
        "      alarms:",
        _key(8, "health", _scalar(names["health"]), f"the outage alarm ({check})"),
        _key(8, "guards", "[]", "alarms that abort a drill when they fire (part of the safety)"),
        _key(6, "sns_topic_arn", "null", "the topic the health alarm notifies"),
        "      s3:",
        _key(8, "bucket", "null", "the static assets' bucket (null: no Static Assets drill)"),
    ]
    return lines


def _validate(text: str, output: Path) -> None:
    """Load ``text`` as the config at ``output`` would be: drdrill's own loader, and the AWS
    target's settings where its extra (boto3) is installed."""
    from drdrill.config import parse_config

    config = parse_config(text, output)
    try:
        from pydantic import ValidationError

        from drdrill.targets.aws.settings import AwsSettings
    except ImportError:  # drdrill without [aws]: the target checks its section when it runs
        return
    try:
        AwsSettings.model_validate(config.target_settings("aws"))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(["targets", "aws", *(str(part) for part in first["loc"])])
        raise ConfigError(f"{output}: {key}", " ".join(first["msg"].split())) from None


def _write(output: Path, text: str, force: bool) -> None:
    """Write ``text`` to ``output``; without ``force`` only a new file (created exclusively)."""
    try:
        with output.open("w" if force else "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise InputError(str(output), "already exists: pass --force to overwrite it") from None
    except OSError as exc:
        raise ConfigError(str(output), f"cannot write: {exc.strerror or exc}") from None
