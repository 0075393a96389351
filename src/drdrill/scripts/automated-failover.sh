#!/usr/bin/env bash
# Runbook option 1: the whole failover in one go (promote the replica, scale DR up, wait for
# healthy targets, switch DNS), no questions asked.
set -euo pipefail
. "$(dirname "$0")/_common.sh"
echo "automated failover: starting $(date -u +%FT%TZ)"
dr failover
echo "automated failover: done $(date -u +%FT%TZ)"
