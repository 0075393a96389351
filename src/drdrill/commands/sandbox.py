"""``drdrill sandbox up|down|status|logs``: the embedded two-region stack."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drdrill.defaults import DEFAULT_CONFIG

if TYPE_CHECKING:
    from drdrill.config import DrillConfig
    from drdrill.sandbox.settings import SandboxSettings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``drdrill sandbox``."""
    parser = sub.add_parser(
        "sandbox",
        help="start, stop or inspect the embedded two-region sandbox",
        description="The embedded two-region sandbox on loopback (settings: targets.sandbox).",
    )
    parser.add_argument(
        "action",
        choices=["up", "down", "status", "logs", "failover", "invoke", "failback", "check"],
        help="failover: the whole DR automation, or one --step; invoke: the DR Lambda",
    )
    parser.add_argument(
        "--step",
        choices=["promote", "scale", "wait_healthy", "switch_dns"],
        help="failover: run one step only (the manual script)",
    )
    parser.add_argument(
        "--payload",
        default='{"trigger":"manual","reason":"disaster_recovery"}',
        help="invoke: the Lambda's JSON payload",
    )
    parser.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG), help="stack config")
    parser.add_argument(
        "--force",
        action="store_true",
        help="failover --step promote: promote DR even while the primary database still takes "
        "writes (two writable databases: a split brain)",
    )
    parser.add_argument("--json", action="store_true", help="status (or a step's result) as JSON")
    parser.add_argument("--lines", type=int, default=40, help="logs: lines of each log")
    parser.set_defaults(run=run)


def _summary(status: dict[str, Any]) -> list[str]:
    lines = [f"sandbox: supervisor pid {status['pid']}, control {status['control']}"]
    for key, region in status["regions"].items():
        rds, alb, ecs = region["rds"], region["alb"], region["ecs"]
        lines.append(
            f"  {key} ({region['name']}): {region['state']}; rds {rds['address']} "
            f"{'running' if rds['running'] else 'down'}{' read-only' if rds['read_only'] else ''}; "
            f"alb {alb['address']} {alb['healthy']} healthy"
            f"{' (cut off from its clients)' if alb.get('cut_off') else ''}; "
            f"ecs {ecs['running']}/{ecs['desired']} tasks"
        )
    link = status.get("link")
    if link:
        state = "PARTITIONED" if link["partitioned"] else "joined"
        shape = f"{link['latency_ms']:g} ms one way"
        if link["jitter_ms"] or link["loss_pct"]:
            shape += f", jitter {link['jitter_ms']:g} ms, loss {link['loss_pct']:g} %"
        if not link["partitioned"] and not link["at_baseline"]:
            shape += f" (configured {link['configured']['latency_ms']:g} ms)"
        lines.append(f"  link between the regions: {state}; {shape}")
    if status.get("split_brain"):
        lines.append("  SPLIT BRAIN: both regions' databases take writes; failback or reset needed")
    dns = status["dns"]
    lines.append(f"  dns {dns['address']}: {dns['name']} -> {dns['active']} (ttl {dns['ttl']} s)")
    lines.append(f"  alarm {status['alarm']['name']}: {status['alarm']['state']}")
    aws = status.get("aws")
    if aws:
        drills = aws.get("config") or "not written (sandbox up writes it)"
        lines.append(f"  aws api {aws['endpoint_url']}; drills through it: {drills}")
    return lines


def _write_aws_config(
    config: DrillConfig, settings: SandboxSettings, run_dir: Path, status: dict[str, Any]
) -> None:
    """``<run_dir>-aws.yaml``: this sandbox drilled through its AWS API."""
    from drdrill.sandbox.aws.stack import drill_config

    aws = status.get("aws")
    if not aws:
        return
    # beside the run folder, which a reset of the sandbox empties
    path = run_dir.parent / f"{run_dir.name}-aws.yaml"
    regions = [settings.primary.name, settings.dr.name]
    failback = {
        "PRIMARY_DESIRED": str(settings.primary.desired),
        # clients hold the sandbox DNS's answers this long
        "DNS_TTL": f"{settings.timings.dns_ttl:g}",
    }
    path.write_text(drill_config(Path(config.path), aws["target"], regions, run_dir, failback))
    aws["config"] = str(path)


def run(args: argparse.Namespace) -> int:
    """Carry out the action."""
    from drdrill.config import load_config
    from drdrill.sandbox import blocklock, control

    config = load_config(args.config)
    settings, run_dir = control.load_settings(config)
    if args.action not in ("up", "down", "logs"):  # up checks itself; down leaves others alone
        blocklock.check(settings.block, run_dir)  # never drive another run folder's sandbox
    if args.action == "up":
        status = control.up(settings, run_dir)
        _write_aws_config(config, settings, run_dir, status)
        print(json.dumps(status, indent=2) if args.json else "\n".join(_summary(status)))
        return 0
    if args.action == "down":
        for line in control.down(settings, run_dir):
            print(f"sandbox: {line}")
        return 0
    if args.action == "status":
        client = control.client_for(settings)
        if not client.alive():
            print(json.dumps({"running": False}) if args.json else "sandbox: not running")
            return 3
        status = client.status()
        aws_config = run_dir.parent / f"{run_dir.name}-aws.yaml"
        if status.get("aws") and aws_config.is_file():  # written by `sandbox up`
            status["aws"]["config"] = str(aws_config)
        print(json.dumps(status, indent=2) if args.json else "\n".join(_summary(status)))
        return 0
    if args.action == "check":
        return _check(settings)
    if args.action in ("failover", "invoke", "failback"):
        return _act(control.client_for(settings), args)
    for log in [
        *sorted(run_dir.rglob("*.log")),
        run_dir / "truth.jsonl",
        run_dir / "observer.jsonl",
    ]:
        if log.exists() and _is_text_log(log, run_dir):
            print(f"==> {log.relative_to(run_dir)} <==")
            print("\n".join(log.read_text(errors="replace").splitlines()[-args.lines :]))
    return 0


def _is_text_log(path: Path, run_dir: Path) -> bool:
    """A log a person reads: not inside a database's data directory (MariaDB keeps binary
    files there, ``ddl_recovery.log`` among them), and no NUL byte in its first 4 KiB."""
    if "data" in path.relative_to(run_dir).parts[:-1]:
        return False
    with path.open("rb") as handle:
        return b"\0" not in handle.read(4096)


def _act(client: Any, args: argparse.Namespace) -> int:
    """Failover, Lambda invocation or failback; prints the result as JSON."""
    from drdrill.errors import InputError

    if args.action == "failover" and args.step:
        if args.step == "promote" and not args.force:
            _refuse_split_brain(client.call("status", light=True))
        result = client.call("failover_step", step=args.step)
        if not args.json:
            print(_step_outcome(args.step, result))
            return 0
    elif args.action == "failover":
        payload = {"trigger": "automated-script", "reason": "disaster_recovery"}
        result = client.call("invoke_dr", payload=payload, wait=True)
    elif args.action == "invoke":
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            raise InputError("--payload", f"not JSON: {exc}") from None
        result = client.call("invoke_dr", payload=payload, wait=True)
    else:
        result = client.call("failback")
    print(json.dumps(result, indent=2, default=str))
    failed = isinstance(result, dict) and result.get("status") == "failed"
    return 1 if failed else 0


def _refuse_split_brain(status: dict[str, Any]) -> None:
    """Refuse to promote DR while the primary region is up and its database takes writes."""
    from drdrill.errors import DrillError

    primary = status["regions"]["primary"]
    rds = primary["rds"]
    if primary["state"] == "up" and rds["running"] and not rds["read_only"]:
        raise DrillError(
            f"the primary database ({primary['name']}, {rds['address']}) still takes writes: "
            "promoting DR now leaves two writable databases (a split brain), and what the "
            "primary takes afterwards is lost. Stop its writes first, or pass --force"
        )


def _step_outcome(step: str, result: dict[str, Any]) -> str:
    """One line saying what a failover step achieved."""
    if result.get("status") == "already done":
        return f"  {step}: already done"
    if step == "promote":
        promotion = result.get("promotion", {})
        caught_up = "caught up" if promotion.get("caught_up") else "NOT caught up"
        return (
            f"  replica writable ({caught_up} to what it had received, applied "
            f"{promotion.get('applied_gtid') or 'nothing'}, {promotion.get('total_s', 0):.2f} s)"
        )
    if step == "scale":
        return f"  DR service desired count {result.get('desired')}"
    if step == "wait_healthy":
        return f"  {result.get('healthy')} healthy targets behind the DR load balancer"
    return f"  the name answers {result.get('active')}"


def _check(settings: Any) -> int:
    """The runbook's post-failover checks through the public name; exit 1 if any fails."""
    import http.client

    from drdrill.probes.resolve import TtlCache

    cache = TtlCache(settings.dns_ip, settings.port("dns"))
    base = f"http://{settings.app_name}:{settings.port('lb')}"
    failed = 0
    for path in ("/health-simple.php", "/", "/api.php?action=stats"):
        where = cache.resolve_url(base + path)
        conn = http.client.HTTPConnection(where.ip, where.port, timeout=5)
        try:
            conn.request("GET", where.target, headers={"Host": where.host_header})
            status = conn.getresponse().status
        except OSError as exc:
            status, failed = 0, failed + 1
            print(f"FAIL {path} via {where.ip}: {exc}")
            continue
        finally:
            conn.close()
        ok = status == 200
        failed += 0 if ok else 1
        print(f"{'ok  ' if ok else 'FAIL'} {path} via {where.ip}: {status}")
    return 1 if failed else 0
