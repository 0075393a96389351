#!/usr/bin/env bash
# Runbook option 2: the manual failover, one step at a time, asking before each (--yes: don't ask).
# The promotion is refused while the primary database still takes writes (a split brain);
# --force promotes all the same. Each step prints what it achieved.
set -euo pipefail
. "$(dirname "$0")/_common.sh"
yes=0
force=()
for arg in "$@"; do
  case "$arg" in
    --yes) yes=1 ;;
    --force) force=(--force) ;;
    *) echo "usage: $0 [--yes] [--force]" >&2; exit 2 ;;
  esac
done
steps=(promote scale wait_healthy switch_dns)
what=("promote the DR database replica" "scale the DR service up" \
      "wait for healthy targets behind the DR load balancer" "switch the DNS record to DR")
for i in "${!steps[@]}"; do
  if [ "$yes" -eq 0 ]; then
    read -r -p "next: ${what[$i]}. go on? [y/N] " answer
    case "$answer" in y|Y|yes) ;; *) echo "stopped before: ${what[$i]}"; exit 1 ;; esac
  fi
  echo "step $((i + 1))/${#steps[@]}: ${what[$i]}"
  dr failover --step "${steps[$i]}" "${force[@]}"
done
echo "manual failover: done $(date -u +%FT%TZ)"
