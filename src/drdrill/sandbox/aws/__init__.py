"""The sandbox as an AWS API endpoint: moto for the protocol and state, the sandbox
for the data plane."""

from __future__ import annotations

import importlib.util


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken install, or an import hook that refuses it
        return False


def unavailable_reason() -> str | None:
    """Why the sandbox's AWS API (``targets.sandbox.aws_api``) cannot be served here (moto or
    boto3 not installed), naming the extra to install; None when it can."""
    missing = [name for name in ("moto", "boto3") if not _installed(name)]
    if not missing:
        return None
    return f"true needs {' and '.join(missing)}, not installed: pip install 'drdrill[aws-api]'"
