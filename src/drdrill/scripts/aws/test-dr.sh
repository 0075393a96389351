#!/usr/bin/env bash
# The runbook's post-failover checks, as aws CLI calls and HTTP requests: the promoted
# database available and no longer a replica, the DR service at its count with every target
# healthy, the record pointing at DR, and every endpoint of the DR load balancer answering 200.
# Exit 0 when all hold; each failed check is named on standard error.
set -euo pipefail
. "$(dirname "$0")/_common.sh"
HTTP_PORT=${HTTP_PORT:-80}
failed=0
check() {
  local what=$1
  shift
  if "$@"; then say "ok: $what"; else say "FAILED: $what"; failed=1; fi
}
running=$(aws ecs describe-services --region "$DR_REGION" --cluster "$CLUSTER" \
  --services "$SERVICE" --query 'services[0].runningCount' --output text)
group=$(target_group_arn "$DR_REGION" "$DR_TARGET_GROUP")
alb=$(aws elbv2 describe-load-balancers --region "$DR_REGION" --names "$DR_ALB" \
  --query 'LoadBalancers[0].DNSName' --output text)
record=$(aws route53 list-resource-record-sets --region us-east-1 --hosted-zone-id "$(zone_id)" \
  --query "ResourceRecordSets[?Name=='$RECORD_NAME.' && SetIdentifier=='primary'].AliasTarget.DNSName | [0]" \
  --output text)
check "$DB_REPLICA promoted (available, not a replica)" db_promoted "$DR_REGION" "$DB_REPLICA"
check "DR service running $running of $DR_DESIRED" test "$running" -ge "$DR_DESIRED"
check "$DR_DESIRED healthy DR targets" healthy_at_least "$DR_REGION" "$group" "$DR_DESIRED"
check "$RECORD_NAME points at $alb (it points at $record)" test "${record%.}" = "${alb%.}"
for path in ${ENDPOINTS:-/health-simple.php / /api.php?action=stats}; do
  check "http://$alb:$HTTP_PORT$path answers 200" \
    curl -fsS -o /dev/null --max-time 5 ${RESOLVE:+--resolve "$alb:$HTTP_PORT:$RESOLVE"} \
    "http://$alb:$HTTP_PORT$path"
done
exit "$failed"
