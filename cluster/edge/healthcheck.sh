#!/usr/bin/env bash
# The edge is healthy once its entrypoint finished the set-up and cron is running.
set -euo pipefail

test -f "${EDGE_READY_FILE:-/run/cronlake-edge.ready}"
pgrep -x cron >/dev/null
