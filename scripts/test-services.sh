#!/usr/bin/env bash
# Start throwaway PostgreSQL and Redis servers on loopback for the storage and bus contract tests,
# and print the environment variables that point the tests at them:
#   eval "$(scripts/test-services.sh start)"   ...   scripts/test-services.sh stop
# State lives under ${SERVICES_DIR:-/tmp/brokerlink-services}; nothing listens beyond 127.0.0.1.
set -euo pipefail
dir=${SERVICES_DIR:-/tmp/brokerlink-services}
pg_port=${PG_PORT:-54329}
redis_port=${REDIS_PORT:-63799}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)

as_pg() {  # PostgreSQL refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  mkdir -p "$dir"
  if [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ]; then
    if [ ! -s "$dir/pg/PG_VERSION" ]; then
      mkdir -p "$dir/pg"
      [ "$(id -u)" = 0 ] && chown postgres "$dir" "$dir/pg"
      as_pg "$pg_bin/initdb" -D "$dir/pg" -U brokerlink --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
    fi
    if ! as_pg "$pg_bin/pg_ctl" -D "$dir/pg" status >/dev/null 2>&1; then
      as_pg "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
        -o "-h 127.0.0.1 -p $pg_port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >&2
    fi
    echo "export BROKERLINK_TEST_POSTGRES_URL=postgresql+asyncpg://brokerlink@127.0.0.1:$pg_port/postgres"
  else
    echo "# PostgreSQL not installed: storage contract tests will skip PostgreSQL" >&2
  fi
  if command -v redis-server >/dev/null; then
    if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
      redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --daemonize yes \
        --logfile "$dir/redis.log" --dir "$dir" >&2
      for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    echo "export BROKERLINK_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
  else
    echo "# redis-server not installed: bus contract tests will skip Redis" >&2
  fi
}

stop() {
  [ -n "$pg_bin" ] && [ -d "$dir/pg" ] && as_pg "$pg_bin/pg_ctl" -D "$dir/pg" -m fast stop >&2 || true
  command -v redis-cli >/dev/null && redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
