# Shared by the runbook's aws-CLI scripts: the stack's names and a few helpers.
#
# The names are the runbook's (visitor-analytics); override any of them in the environment.
# AWS_ENDPOINT_URL, when set, sends every call to that endpoint instead of AWS (the sandbox's
# AWS API: `drdrill sandbox status --json` prints it with the credentials to use).
APP=${APP:-visitor-analytics}
PRIMARY_REGION=${DRDRILL_PRIMARY_REGION:-${PRIMARY_REGION:-eu-west-1}}
DR_REGION=${DRDRILL_DR_REGION:-${DR_REGION:-eu-central-1}}
CLUSTER=${CLUSTER:-$APP}
SERVICE=${SERVICE:-$APP}
DB_PRIMARY=${DB_PRIMARY:-$APP-db}
DB_REPLICA=${DB_REPLICA:-$APP-db-replica}
PRIMARY_ALB=${PRIMARY_ALB:-$APP-primary}
DR_ALB=${DR_ALB:-$APP-dr}
PRIMARY_TARGET_GROUP=${PRIMARY_TARGET_GROUP:-$APP-primary}
DR_TARGET_GROUP=${DR_TARGET_GROUP:-$APP-dr}
RECORD_NAME=${RECORD_NAME:-app.$APP.test}
# with or without Route53's trailing dot: the lookups below add it (written with it, the
# record was not found and an UPSERT dropped its health check)
RECORD_NAME=${RECORD_NAME%.}
ZONE_NAME=${ZONE_NAME:-${RECORD_NAME#*.}}
ZONE_ID=${ZONE_ID:-}
DR_DESIRED=${DR_DESIRED:-2}
PRIMARY_DESIRED=${PRIMARY_DESIRED:-2}
#: how long each wait may take (seconds) and how often it asks
WAIT_TIMEOUT=${WAIT_TIMEOUT:-300}
POLL=${POLL:-0.2}

say() { echo "$(date -u +%FT%T.%3NZ) $*" >&2; }

# wait_for <what> <command...>: run the command until it succeeds, at most WAIT_TIMEOUT s
wait_for() {
  local what=$1 deadline=$((SECONDS + WAIT_TIMEOUT))
  shift
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "gave up waiting for $what after ${WAIT_TIMEOUT} s"
      return 1
    fi
    sleep "$POLL"
  done
}

db_status() {
  aws rds describe-db-instances --region "$1" --db-instance-identifier "$2" \
    --query 'DBInstances[0].DBInstanceStatus' --output text
}

# db_promoted <region> <id>: available and no longer a read replica
db_promoted() {
  local answer
  answer=$(aws rds describe-db-instances --region "$1" --db-instance-identifier "$2" \
    --query 'DBInstances[0].[DBInstanceStatus, ReadReplicaSourceDBInstanceIdentifier]' \
    --output text)
  [ "$answer" = "available	None" ]
}

target_group_arn() {
  aws elbv2 describe-target-groups --region "$1" --names "$2" \
    --query 'TargetGroups[0].TargetGroupArn' --output text
}

# healthy_at_least <region> <target group arn> <count>
healthy_at_least() {
  local healthy
  healthy=$(aws elbv2 describe-target-health --region "$1" --target-group-arn "$2" \
    --query "length(TargetHealthDescriptions[?TargetHealth.State=='healthy'])" --output text)
  [ "$healthy" -ge "$3" ]
}

zone_id() {
  [ -n "$ZONE_ID" ] && { echo "$ZONE_ID"; return; }
  aws route53 list-hosted-zones-by-name --region us-east-1 --dns-name "$ZONE_NAME" \
    --query 'HostedZones[0].Id' --output text
}

# point_record_at <region> <load balancer name>: the primary failover record's alias to that
# load balancer, keeping its health check (an UPSERT replaces the whole record); prints
# Route53's answer (its ChangeInfo) on standard output
point_record_at() {
  local alb zone check health=""
  alb=$(aws elbv2 describe-load-balancers --region "$1" --names "$2" \
    --query 'LoadBalancers[0].[DNSName, CanonicalHostedZoneId]' --output text)
  zone=$(zone_id)
  check=$(aws route53 list-resource-record-sets --region us-east-1 --hosted-zone-id "$zone" \
    --query "ResourceRecordSets[?Name=='$RECORD_NAME.' && SetIdentifier=='primary'].HealthCheckId | [0]" \
    --output text)
  [ -n "$check" ] && [ "$check" != None ] && health=", \"HealthCheckId\": \"$check\""
  aws route53 change-resource-record-sets --region us-east-1 --hosted-zone-id "$zone" --change-batch "$(cat <<JSON
{"Comment": "DR: $RECORD_NAME to $2",
 "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
   "Name": "$RECORD_NAME", "Type": "A", "SetIdentifier": "primary", "Failover": "PRIMARY"$health,
   "AliasTarget": {"HostedZoneId": "${alb#*	}", "DNSName": "${alb%	*}",
                   "EvaluateTargetHealth": true}}}]}
JSON
)"
}

change_insync() {
  [ "$(aws route53 get-change --region us-east-1 --id "$1" --query 'ChangeInfo.Status' --output text)" = INSYNC ]
}

# point_and_wait <region> <load balancer name>: point_record_at, Route53's answer on standard
# output, then wait until the change is INSYNC (served by every Route53 name server)
point_and_wait() {
  local answer change
  answer=$(point_record_at "$1" "$2")
  echo "$answer"
  change=$(echo "$answer" | sed -n 's/.*"Id": "\(\/change\/[A-Za-z0-9]*\)".*/\1/p' | head -1)
  wait_for "the record change to be INSYNC" change_insync "$change"
}
