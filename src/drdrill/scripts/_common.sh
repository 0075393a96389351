# Shared by the runbook's scripts: which drdrill and which stack config to use.
DRDRILL=${DRDRILL:-drdrill}
CONFIG=${DRDRILL_CONFIG:-drdrill.yaml}
dr() { "$DRDRILL" sandbox "$@" --config "$CONFIG"; }
