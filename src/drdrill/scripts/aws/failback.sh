#!/usr/bin/env bash
# Runbook: failback. Service back to the primary region, DR back to pilot light, with no
# acknowledged write lost: the writes made during DR come back with the rebuilt primary.
# Every step is aws CLI calls; progress goes to standard error, Route53's answer to the
# record change (its ChangeInfo) to standard output.
#
#   1. the primary region's service to 0 (its tasks held the old database)
#   2. the old primary database rebuilt as a cross-region read replica of DR's
#   3. the primary service scaled up, healthy (reading from the replica)
#   4. the record pointed back at the primary load balancer; one DNS TTL for clients to move
#   5. DR's service to 0: nothing writes to DR any more
#   6. the primary's replica promoted (it applies what arrived first): it takes the writes
#   7. DR's database rebuilt as a read replica of the primary (pilot light)
#
# Between 4 and 6 the primary serves reads and refuses writes (its database is a replica):
# a short write outage instead of writes acknowledged by DR after the promotion, and lost.
set -euo pipefail
. "$(dirname "$0")/_common.sh"
#: how long clients may hold the old DNS answer (the record's TTL, seconds)
DNS_TTL=${DNS_TTL:-60}

db_arn() {
  aws rds describe-db-instances --region "$1" --db-instance-identifier "$2" \
    --query 'DBInstances[0].DBInstanceArn' --output text
}

db_gone() {
  ! aws rds describe-db-instances --region "$1" --db-instance-identifier "$2" >/dev/null 2>&1
}

db_available() { [ "$(db_status "$1" "$2")" = available ]; }

# db_replicating <region> <id>: RDS reports the replica's read replication as replicating
# (available comes first: the replica is up before its replication has connected)
db_replicating() {
  [ "$(aws rds describe-db-instances --region "$1" --db-instance-identifier "$2" \
    --query 'DBInstances[0].StatusInfos[?StatusType==`read replication`].Status | [0]' \
    --output text 2>/dev/null)" = replicating ]
}

# replica_of <region> <id> <source arn>: the instance is a read replica of that source
replica_of() {
  local source
  source=$(aws rds describe-db-instances --region "$1" --db-instance-identifier "$2" \
    --query 'DBInstances[0].ReadReplicaSourceDBInstanceIdentifier' --output text 2>/dev/null) \
    || return 1
  [ "$source" = "$3" ]
}

# rebuild <region> <id> <source region> <source arn>: the instance again, as a read replica
# of the source (RDS cannot turn a database into a replica: it is deleted and created anew)
rebuild() {
  if replica_of "$1" "$2" "$4"; then
    say "  $2 is a read replica of $4 already"
  else
    if ! db_gone "$1" "$2"; then
      aws rds delete-db-instance --region "$1" --db-instance-identifier "$2" \
        --skip-final-snapshot >/dev/null
      wait_for "$2 to be deleted" db_gone "$1" "$2"
    fi
    aws rds create-db-instance-read-replica --region "$1" --db-instance-identifier "$2" \
      --source-db-instance-identifier "$4" --source-region "$3" >/dev/null
  fi
  wait_for "$2 to be available" db_available "$1" "$2"
  wait_for "$2 to replicate" db_replicating "$1" "$2"
}

dr_arn=$(db_arn "$DR_REGION" "$DB_REPLICA")
if replica_of "$DR_REGION" "$DB_REPLICA" "$(db_arn "$PRIMARY_REGION" "$DB_PRIMARY" 2>/dev/null || true)"; then
  say "failback: $DB_REPLICA is a read replica of the primary: nothing to fail back"
  exit 1
fi

say "step 1/7: scale $CLUSTER/$SERVICE in $PRIMARY_REGION to 0"
aws ecs update-service --region "$PRIMARY_REGION" --cluster "$CLUSTER" --service "$SERVICE" \
  --desired-count 0 >/dev/null

say "step 2/7: rebuild $DB_PRIMARY in $PRIMARY_REGION as a read replica of $DB_REPLICA"
rebuild "$PRIMARY_REGION" "$DB_PRIMARY" "$DR_REGION" "$dr_arn"

say "step 3/7: scale $CLUSTER/$SERVICE in $PRIMARY_REGION to $PRIMARY_DESIRED; wait healthy"
aws ecs update-service --region "$PRIMARY_REGION" --cluster "$CLUSTER" --service "$SERVICE" \
  --desired-count "$PRIMARY_DESIRED" >/dev/null
group=$(target_group_arn "$PRIMARY_REGION" "$PRIMARY_TARGET_GROUP")
wait_for "$PRIMARY_DESIRED healthy targets" healthy_at_least "$PRIMARY_REGION" "$group" "$PRIMARY_DESIRED"

say "step 4/7: point $RECORD_NAME at $PRIMARY_ALB; wait ${DNS_TTL} s for clients to move"
point_and_wait "$PRIMARY_REGION" "$PRIMARY_ALB"
sleep "$DNS_TTL"

say "step 5/7: scale $CLUSTER/$SERVICE in $DR_REGION to 0"
aws ecs update-service --region "$DR_REGION" --cluster "$CLUSTER" --service "$SERVICE" \
  --desired-count 0 >/dev/null

say "step 6/7: promote $DB_PRIMARY"
aws rds promote-read-replica --region "$PRIMARY_REGION" --db-instance-identifier "$DB_PRIMARY" \
  >/dev/null
wait_for "$DB_PRIMARY to be promoted" db_promoted "$PRIMARY_REGION" "$DB_PRIMARY"

say "step 7/7: rebuild $DB_REPLICA in $DR_REGION as a read replica of $DB_PRIMARY"
rebuild "$DR_REGION" "$DB_REPLICA" "$PRIMARY_REGION" "$(db_arn "$PRIMARY_REGION" "$DB_PRIMARY")"
say "failback: done"
