#!/usr/bin/env bash
# Return service to the primary region and DR to pilot light.
set -euo pipefail
. "$(dirname "$0")/_common.sh"
dr failback
