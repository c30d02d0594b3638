# bench/lib.sh: what the benchmark scripts share, sourced by them: a
# throwaway durable PostgreSQL, services started on 127.0.0.1 and stopped on
# exit, and children run so that Ctrl-C interrupts at once.
# The sourcing script sets ROOT and NAME (for messages) before sourcing,
# then WORK (a temporary folder) and KEEP, and calls bench_traps.

PG_START=${SHOP_BENCH_PG_START:-$ROOT/tests/pg/start}
PG_STOP=${SHOP_BENCH_PG_STOP:-$ROOT/tests/pg/stop}
SERVICE_SQL=${SHOP_BENCH_SERVICE_SQL:-$ROOT/deploy/db/service.sql}
PGDIR=
PG_STARTED=0
SERVICE_PIDS=()
CHILD=

die() { echo "$NAME: $*" >&2; exit 1; }

# Runs "$@" in the background with stdout to $1 and waits for it. A trapped
# signal interrupts `wait` at once, and cleanup then stops the child.
run_child() {
  local out=$1 rc=0
  shift
  "$@" >"$out" 2>>"$WORK/child.err" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  return $rc
}

bench_cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  if [ -n "$CHILD" ]; then
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  for pid in "${SERVICE_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${SERVICE_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "$PG_STARTED" = 1 ]; then
    "$PG_STOP" "$PGDIR" >/dev/null 2>&1 || echo "$NAME: $PG_STOP $PGDIR failed" >&2
  fi
  if [ "$KEEP" = 1 ] || [ $rc -ne 0 ]; then
    echo "$NAME: logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}

bench_traps() {
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Refuses ports somebody else holds, rather than benchmarking their process.
bench_ports_free() {
  local p
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      die "127.0.0.1:$p is in use; pick other ports with --port-base"
    fi
  done
}

# A throwaway cluster made durable (tests/pg/start tunes for tests). Sets
# ADMIN_CONN, PG_PORT, DBNAME and SETTINGS.
bench_cluster() {
  PGDIR=$WORK/pg
  [ -x "$PG_START" ] || die "$PG_START is missing"
  echo "== postgres ($PGDIR)" >&2
  mkdir -p "$PGDIR"
  PG_STARTED=1
  "$PG_START" "$PGDIR" >"$WORK/pg-start.log" 2>&1 || { cat "$WORK/pg-start.log" >&2; die "tests/pg/start failed"; }
  [ -f "$PGDIR/conninfo" ] || die "tests/pg/start wrote no $PGDIR/conninfo"
  ADMIN_CONN=$(cat "$PGDIR/conninfo")
  PG_PORT=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$ADMIN_CONN")
  [ -n "$PG_PORT" ] || die "no port in $PGDIR/conninfo: $ADMIN_CONN"
  DBNAME=$(sed -n 's/.*dbname=\([^ ]*\).*/\1/p' <<<"$ADMIN_CONN")
  DBNAME=${DBNAME:-postgres}
  psql_admin -c "ALTER SYSTEM SET fsync = on" \
             -c "ALTER SYSTEM SET synchronous_commit = on" \
             -c "ALTER SYSTEM SET full_page_writes = on" \
             -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.5
  # SHOP_BENCH_STATEMENTS=1: count every statement (pg_stat_statements, a
  # restart to load it), its planning included; bench_statements prints them
  # per unit of work. That counting contends under concurrency: the
  # throughput of such a run is not comparable with a plain one.
  if [ "${SHOP_BENCH_STATEMENTS:-0}" = 1 ]; then
    psql_admin -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" >/dev/null
    local owner=()
    [ "$(id -u)" = 0 ] && owner=(setpriv --reuid=shop --regid=shop --init-groups --)
    "${owner[@]}" "${SHOP_PG_BIN:-/usr/lib/postgresql/15/bin}/pg_ctl" -D "$PGDIR/data" -w -t 60 \
      restart >>"$WORK/pg-start.log" 2>&1 || die "restart with pg_stat_statements failed"
    psql_admin -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
               -c "ALTER SYSTEM SET pg_stat_statements.track_planning = on" \
               -c "SELECT pg_reload_conf()" >/dev/null
  fi
  SETTINGS=$(psql_admin -At -F '=' -c "SELECT name, setting FROM pg_settings
    WHERE name IN ('fsync','synchronous_commit','full_page_writes','wal_sync_method',
                   'shared_buffers','max_connections') ORDER BY name" | tr '\n' ' ')
  [[ $SETTINGS == *"fsync=on"* && $SETTINGS == *"synchronous_commit=on"* ]] ||
    die "the cluster is not durable after ALTER SYSTEM: $SETTINGS"
}

# bench_statements_reset; bench_statements <units>: with SHOP_BENCH_STATEMENTS=1,
# every statement since the reset by total time, with calls, execution and
# planning time per unit of work (an order, a quote); otherwise nothing.
bench_statements_reset() {
  [ "${SHOP_BENCH_STATEMENTS:-0}" = 1 ] || return 0
  psql_admin -c "SELECT pg_stat_statements_reset()" >/dev/null
}
bench_statements() {
  [ "${SHOP_BENCH_STATEMENTS:-0}" = 1 ] || return 0
  local units=${1:-1}
  [ "$units" -gt 0 ] 2>/dev/null || units=1
  echo "statements per unit of work ($units units):" >&2
  psql_admin -P pager=off -c "SELECT r.rolname AS role,
      round(s.calls::numeric / $units, 2) AS calls_per_unit,
      round((s.total_exec_time * 1000 / $units)::numeric, 1) AS us_per_unit,
      round((s.total_exec_time * 1000 / greatest(s.calls, 1))::numeric, 1) AS us_per_call,
      round((s.total_plan_time * 1000 / $units)::numeric, 1) AS plan_us_per_unit,
      left(regexp_replace(s.query, '\s+', ' ', 'g'), 90) AS query
    FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
    WHERE s.calls > 0 AND s.query NOT LIKE '%pg_stat_statements%'
    ORDER BY s.total_exec_time + s.total_plan_time DESC LIMIT 40" >&2
}

psql_admin() { psql "$ADMIN_CONN" -X -v ON_ERROR_STOP=1 -q "$@"; }

# bench_service <name> <binary> <rpc port> <workers> [VAR=value ...]: the
# service's role and schema as deployment makes them, then the service on
# 127.0.0.1 (PUB and admin on the next two ports), waited for until ready.
# Appends its pid to SERVICE_PIDS and sets <NAME>_PID and <NAME>_CONN.
bench_service() {
  local name=$1 bin=$2 port=$3 workers=$4 pid ready=0
  shift 4
  psql_admin -v service="$name" -f "$SERVICE_SQL" >"$WORK/service-sql-$name.log" 2>&1 ||
    { cat "$WORK/service-sql-$name.log" >&2; die "deploy/db/service.sql failed for $name"; }
  # over the cluster's unix socket, as a service beside its database would
  # connect (SHOP_BENCH_PG_TCP=1: over TCP on 127.0.0.1)
  local host=$PGDIR
  [ "${SHOP_BENCH_PG_TCP:-0}" = 1 ] && host=127.0.0.1
  local conn="host=$host port=$PG_PORT user=$name dbname=$DBNAME"
  echo "== shop-$name (workers $workers, rpc 127.0.0.1:$port)" >&2
  env SHOP_DATABASE_URL="$conn" SHOP_RPC_BIND="tcp://127.0.0.1:$port" \
      SHOP_PUB_BIND="tcp://127.0.0.1:$((port + 1))" SHOP_ADMIN_ADDR=127.0.0.1 \
      SHOP_ADMIN_PORT="$((port + 2))" SHOP_WORKERS="$workers" SHOP_LOG_LEVEL=warn "$@" \
      "$bin" >"$WORK/$name.log" 2>&1 &
  pid=$!
  SERVICE_PIDS+=("$pid")
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$WORK/$name.log" >&2; die "shop-$name exited at start-up"; }
    if curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$((port + 2))/readyz"; then ready=1; break; fi
    sleep 0.2
  done
  [ $ready = 1 ] || { tail -20 "$WORK/$name.log" >&2; die "shop-$name not ready within 30 s"; }
  printf -v "${name^^}_PID" '%s' "$pid"
  printf -v "${name^^}_CONN" '%s' "$conn"
}

# A peer a bench does not start: a closed port, so a consumer of its stream
# starts and waits for it (the service is ready; the stream stays empty).
ABSENT="tcp://127.0.0.1:9"

# rss <pid> <VmHWM|VmRSS>: MiB.
rss() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# cpu_ms <pid...>: CPU time (user + system) the processes have used, in ms.
cpu_ms() {
  local tick
  tick=$(getconf CLK_TCK)
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null || true; done |
    sed 's/^.*) //' | awk -v t="$tick" '{ s += $12 + $13 } END { printf "%d", s * 1000 / t }'
}
# switches <pid...>: context switches (voluntary and not) so far of every
# thread of the processes.
switches() {
  for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null || true; done |
    awk '$1 ~ /ctxt_switches:$/ { s += $2 } END { printf "%d", s }'
}
# cpu_parts <service=pid>...: CPU milliseconds and context switches so far
# of each part, one "part<TAB>ms<TAB>switches" line each: every service
# process named, and the cluster's backends by application name
# (catalog-worker, orders-relay, …; numbered workers summed), the rest of
# the cluster as "postgres: other".
cpu_parts() {
  local named others
  named=$(psql_admin -At -F ' ' -c "SELECT pid, application_name FROM pg_stat_activity
                                     WHERE application_name <> '' AND pid <> pg_backend_pid()")
  others=$(pg_pids | tr ' ' '\n' | grep -vxF -f <(cut -d ' ' -f 1 <<<"$named") || true)
  {
    for sp in "$@"; do
      printf 'service: %s\t%s\t%s\n' "${sp%%=*}" "$(cpu_ms "${sp#*=}")" "$(switches "${sp#*=}")"
    done
    while read -r pid name; do
      [ -n "$pid" ] && printf 'postgres: %s\t%s\t%s\n' "${name%-[0-9]*}" "$(cpu_ms "$pid")" "$(switches "$pid")"
    done <<<"$named"
    # shellcheck disable=SC2086  # one pid per word
    printf 'postgres: other\t%s\t%s\n' "$(cpu_ms $others)" "$(switches $others)"
  } | awk -F '\t' '{ ms[$1] += $2; sw[$1] += $3 } END { for (k in ms) printf "%s\t%d\t%d\n", k, ms[k], sw[k] }' | sort
}

# pg_pids: the cluster's postmaster and every process it started.
pg_postmaster() { head -1 "$PGDIR/data/postmaster.pid"; }
pg_pids() {
  local pm
  pm=$(pg_postmaster)
  echo "$pm" $(pgrep -P "$pm")
}
# pg_cpu_ms: CPU milliseconds so far of the whole cluster, backends that
# have exited included (the postmaster counts its reaped children).
pg_cpu_ms() {
  local reaped
  reaped=$(sed 's/^.*) //' "/proc/$(pg_postmaster)/stat" |
           awk -v t="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000 / t }')
  echo $(( $(cpu_ms $(pg_pids)) + reaped ))
}

# pg_commits: "<commits> <WAL flushes>" so far, the whole cluster's
# (pg_stat_database, pg_stat_wal). PostgreSQL 15 reports a busy backend's
# counts at most once a second and an idle one's up to STATS_WAIT seconds
# after it went idle: read them that long after the work, or a level's
# last second lands in the next one's counts.
STATS_WAIT=11
pg_commits() {
  psql_admin -At -F ' ' -c "SELECT (SELECT sum(xact_commit) FROM pg_stat_database), wal_sync FROM pg_stat_wal"
}
# per_unit <machine ms> <pg_commits before> <pg_commits after> <units>: the
# machine's CPU µs, commits and WAL flushes per unit, tab-separated.
per_unit() {
  awk -v m="$1" -v k0="$2" -v k1="$3" -v n="$4" 'BEGIN { if (n < 1) n = 1
    split(k0, a, " "); split(k1, b, " ")
    printf "%.0f\t%.2f\t%.2f", m * 1000 / n, (b[1] - a[1]) / n, (b[2] - a[2]) / n }'
}
# machine_ms: CPU milliseconds so far of the whole machine, every process and
# the kernel (user, nice, system, irq, softirq; steal and idle not counted).
machine_ms() {
  awk -v t="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%d", ($2 + $3 + $4 + $7 + $8) * 1000 / t }' /proc/stat
}

# bench_settle <pid>...: waits (up to 60 s) until the processes and the
# cluster are done with what loading left them (events to relay and apply,
# caches to fill): a second in which together they use under 3% of a core.
# The first level would otherwise pay for it.
bench_settle() {
  local a b
  for _ in $(seq 1 60); do
    a=$(( $(cpu_ms "$@") + $(pg_cpu_ms) ))
    sleep 1
    b=$(( $(cpu_ms "$@") + $(pg_cpu_ms) ))
    [ $((b - a)) -lt 30 ] && return 0
  done
  echo "$NAME: still busy after loading (going on)" >&2
}

# bench_build <build dir> <targets...>: a Release build in its own folder.
bench_build() {
  local dir=$1
  shift
  echo "== build ($dir)" >&2
  # configure every time (quick when nothing changed): new services appear
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" 2>&1 ||
    { cat "$WORK/cmake.log" >&2; die "cmake configure failed"; }
  cmake --build "$dir" -j2 --target "$@" >"$WORK/build.log" 2>&1 ||
    { tail -30 "$WORK/build.log" >&2; die "build failed"; }
}

# bench_pgbench <out.tsv> <conninfo> <pgbench command...>: the command at
# each of LEVEL_LIST for DURATION seconds; one line per level in out.tsv:
# concurrency, TPS, failed transactions, p99 ms (from the per-transaction
# log), the cluster's CPU µs per transaction.
bench_pgbench() {
  local out=$1 conn=$2 c j secs tps failed p99 cpu0 cpu1 kids m0 m1 k0 k1
  shift 2
  : >"$out"
  sleep "$STATS_WAIT"   # what ran before has reached the counts (pg_commits)
  for c in "${LEVEL_LIST[@]}"; do
    echo "== pgbench concurrency $c (${DURATION}s)" >&2
    j=$(( c < 2 ? 1 : 2 ))
    secs=$(awk -v d="$DURATION" 'BEGIN { s = int(d + 0.5); print (s < 1 ? 1 : s) }')
    # -l logs every transaction's latency (3rd column, microseconds) for its p99
    kids=$(pgrep -c -P "$(pg_postmaster)" || true)
    cpu0=$(pg_cpu_ms) m0=$(machine_ms) k0=$(pg_commits)
    run_child "$WORK/pgbench-$c.log" timeout $((secs + 60)) "$@" -c "$c" -j "$j" -T "$secs" \
      -l --log-prefix="$WORK/pgblog-$c" "$conn" ||
      { tail -20 "$WORK/child.err" >&2; die "pgbench failed at concurrency $c"; }
    # pgbench's backends reaped first: one caught between the postmaster's
    # count and its own would be counted twice or not at all
    for _ in $(seq 1 50); do
      [ "$(pgrep -c -P "$(pg_postmaster)" || true)" -le "$kids" ] && break
      sleep 0.1
    done
    cpu1=$(pg_cpu_ms) m1=$(machine_ms)
    sleep 1   # pgbench's backends reported their counts as they exited
    k1=$(pg_commits)
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench-$c.log" | tail -1)
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/pgbench-$c.log")
    p99=$(cat "$WORK"/pgblog-"$c".* | awk '{ print $3 }' | sort -n |
          awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f", (NR ? v[i] / 1000 : 0) }')
    rm -f "$WORK"/pgblog-"$c".*
    # the cluster's CPU µs per transaction (its backends, pgbench's own CPU
    # not counted); the whole machine's, commits and WAL flushes per transaction
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "${tps:-0}" "${failed:-0}" "${p99:-0}" \
      "$(awk -v a="$cpu0" -v b="$cpu1" -v t="${tps:-0}" -v s="$secs" 'BEGIN { n = t * s; printf "%.0f", (n > 0 ? (b - a) * 1000 / n : 0) }')" \
      "$(per_unit $((m1 - m0)) "$k0" "$k1" "$(awk -v t="${tps:-0}" -v s="$secs" 'BEGIN { printf "%d", t * s }')")" >>"$out"
  done
}
