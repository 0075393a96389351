#!/usr/bin/env bash
# The runbook's post-failover checks, through the public name: every endpoint answers 200.
set -euo pipefail
. "$(dirname "$0")/_common.sh"
exec "$DRDRILL" sandbox check --config "$CONFIG"
