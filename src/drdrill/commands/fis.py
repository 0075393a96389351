"""``drdrill fis export``: the drill faults as AWS FIS experiment templates, one JSON file each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drdrill import defaults
from drdrill.errors import DrillError, InputError

DEFAULT_CONFIG = Path(defaults.DEFAULT_CONFIG)
DEFAULT_OUT = Path("fis-templates")

DESCRIPTION = (
    "Write one AWS FIS experiment template a drill fault the suites use (stop one task, stop "
    "half the tasks, reboot clean, reboot crash, region down), built from targets.aws of the "
    "config: the role of targets.aws.fis.role_arn, the guard alarms as stop conditions. Each "
    "file is ready for: aws fis create-experiment-template --cli-input-json file://FILE. "
    "Reads the stack (alarms, database, service) and changes nothing."
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``fis`` and its ``export`` action."""
    parser = sub.add_parser(
        "fis",
        help="AWS Fault Injection Service: export the drill faults as experiment templates",
        description="AWS Fault Injection Service as drdrill's injection backend (docs/fis.md).",
    )
    actions = parser.add_subparsers(dest="fis_command", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export", help="write the drill faults as FIS experiment templates", description=DESCRIPTION
    )
    export.add_argument(
        "--config",
        metavar="drdrill.yaml",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the stack config (default: {DEFAULT_CONFIG})",
    )
    export.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=DEFAULT_OUT,
        help=f"the folder to write the templates to (default: {DEFAULT_OUT})",
    )
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Write the templates and print where; bad config is one line (exit 2), AWS errors too (1)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from drdrill.config import load_config
    from drdrill.targets.aws.fis import export_templates
    from drdrill.targets.aws.settings import load_aws_settings

    config = load_config(args.config)
    settings = load_aws_settings(config)
    try:
        templates, warnings = export_templates(settings, settings.clients(), str(config.path))
    except (BotoCoreError, ClientError) as exc:
        # no credentials, no endpoint: one line, as for any other error
        raise DrillError(f"aws: {' '.join(str(exc).split())}") from exc
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for template in templates:
            path = out / f"{template.name}.json"
            path.write_text(template.to_json(), encoding="utf-8")
            written.append((template, path))
    except OSError as exc:
        raise InputError("--out", f"cannot write to {out}: {exc.strerror or exc}") from exc
    for warning in warnings:
        print(f"drdrill fis: warning: {warning}", file=sys.stderr)
    for template, path in written:
        print(f"drdrill fis: wrote {path} ({template.region})")
    region = settings.primary.region
    print(
        "drdrill fis: create one with: aws fis create-experiment-template "
        f"--region {region} --cli-input-json file://{out / 'stop-one-task.json'}"
    )
    return 0
