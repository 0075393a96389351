#!/usr/bin/env bash
# Runbook option 2: the manual failover, one step at a time, asking before each
# (--yes: don't ask). Each step is aws CLI calls; Route53's answer to the record change
# (its ChangeInfo) goes to standard output, the progress to standard error.
set -euo pipefail
. "$(dirname "$0")/_common.sh"
yes=0
[ "${1:-}" = "--yes" ] && yes=1

ask() {
  [ "$yes" -eq 1 ] && return 0
  read -r -p "next: $1. go on? [y/N] " answer || answer=""
  case "$answer" in y|Y|yes) ;; *) say "stopped before: $1"; exit 1 ;; esac
}

ask "promote the DR database replica ($DB_REPLICA)"
say "step 1/4: promote $DB_REPLICA in $DR_REGION"
if db_promoted "$DR_REGION" "$DB_REPLICA"; then
  say "  $DB_REPLICA is no read replica (promoted already)"
else
  aws rds promote-read-replica --region "$DR_REGION" --db-instance-identifier "$DB_REPLICA" \
    >/dev/null
fi
wait_for "$DB_REPLICA to be promoted" db_promoted "$DR_REGION" "$DB_REPLICA"

ask "scale the DR service up to $DR_DESIRED tasks"
say "step 2/4: scale $CLUSTER/$SERVICE in $DR_REGION to $DR_DESIRED"
aws ecs update-service --region "$DR_REGION" --cluster "$CLUSTER" --service "$SERVICE" \
  --desired-count "$DR_DESIRED" >/dev/null

ask "wait for healthy targets behind the DR load balancer"
say "step 3/4: wait for $DR_DESIRED healthy targets in $DR_TARGET_GROUP"
group=$(target_group_arn "$DR_REGION" "$DR_TARGET_GROUP")
wait_for "$DR_DESIRED healthy targets" healthy_at_least "$DR_REGION" "$group" "$DR_DESIRED"

ask "point $RECORD_NAME at the DR load balancer"
say "step 4/4: point $RECORD_NAME at $DR_ALB"
point_and_wait "$DR_REGION" "$DR_ALB"
say "manual failover: done"
