#!/usr/bin/env bash
# Runbook option 1: the whole failover to the DR region in one go, as aws CLI calls:
# promote the DR database replica, scale the DR service up, wait for healthy targets behind
# the DR load balancer, point the failover record at DR. No questions asked.
set -euo pipefail
. "$(dirname "$0")/_common.sh"
say "automated failover: $PRIMARY_REGION -> $DR_REGION"
"$(dirname "$0")/failover.sh" --yes
say "automated failover: done"
