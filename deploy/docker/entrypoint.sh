#!/bin/sh
# kiln <service> [flags...]: runs one compiled Kiln service (gateway, router, worker, or cluster:
# all three under the supervisor) with plain Node from /app/services/<service>/dist/main.js.
# The container runs it under tini (PID 1), which forwards SIGTERM so the service can drain.
set -eu

APP_DIR="${KILN_APP_DIR:-/app}"
service="${1:-cluster}"
[ $# -gt 0 ] && shift

case "$service" in
  gateway | router | cluster) ;;
  worker)
    # In the chart's worker StatefulSet, pod ordinal o (the suffix of POD_NAME) is
    # tensor-parallel rank o % TP of data-parallel group o / TP.
    if [ -n "${POD_NAME:-}" ]; then
      ordinal="${POD_NAME##*-}"
      tp="${KILN_TENSOR_PARALLEL_SIZE:-1}"
      KILN_TP_RANK="${KILN_TP_RANK:-$((ordinal % tp))}"
      KILN_REPLICA_ID="${KILN_REPLICA_ID:-replica-$((ordinal / tp))}"
      export KILN_TP_RANK KILN_REPLICA_ID
    fi
    ;;
  *)
    echo "usage: kiln gateway|router|worker|cluster [flags...]" >&2
    exit 64
    ;;
esac

if [ "${KILN_ENTRYPOINT_DRY_RUN:-}" = "1" ]; then
  echo "node $APP_DIR/services/$service/dist/main.js $* KILN_TP_RANK=${KILN_TP_RANK:-} KILN_REPLICA_ID=${KILN_REPLICA_ID:-}"
  exit 0
fi
exec node "$APP_DIR/services/$service/dist/main.js" "$@"
