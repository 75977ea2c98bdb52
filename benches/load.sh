#!/usr/bin/env bash
# End-to-end load scenarios of BENCHMARKS.md: a real mosquitto started from
# config/mosquitto/eoc.conf (as tests/support/mosquitto.rs does: only the
# listener, file paths, persistence and log are rewritten), a release
# eoc-server on the Tajikistan scenario with a fresh data directory, and
# eoc-load playing phones, dashboards and a chair.
#
#   bash benches/load.sh                # every scenario
#   bash benches/load.sh ingest-mqtt    # one of: ingest-mqtt ingest-ws fanout fanout-peer nearest-peer
#   LOAD_SECONDS=30 bash benches/load.sh # longer runs (default 15 s each)
#   LOAD_RATE=40000 bash benches/load.sh ingest-mqtt  # a set rate instead of as fast as possible
#
# `fanout-peer` runs the fan-out workload against eoc and against the naive
# peer (`eoc-naive-fanout`: tokio broadcast + tokio-tungstenite) in the same
# run, at each rate of LOAD_RATES (default "100 250 500" positions/s), and
# ends with a table of both and their ratio:
#   LOAD_RATES="250" LOAD_DASHBOARDS=1000 bash benches/load.sh fanout-peer
# LOAD_ALERTS (default 5) sets how many earthquakes the chair posts in each
# of eoc's fan-out runs and LOAD_ALERT_MAGNITUDE their magnitude (default
# 6.0: 359 villages, a ~200 KB impact frame to every dashboard);
# LOAD_PEER=0 leaves the peer's runs out. LOAD_WRAP prefixes the generator's
# command (e.g. "/usr/bin/time -f %U+%S" for its own CPU time).
#
# `nearest-peer` measures nearest-site queries over HTTP (50 keep-alive
# connections, k = 1 and 10) against Redis GEOSEARCH on the same sites and
# query points (`eoc-load nearest`), LOAD_RUNS times (default 3), and ends
# with the median of each row. It needs no broker: run alone, the server
# starts with --no-mqtt. Redis is REDIS (default 127.0.0.1:6379); the run
# adds one key and deletes it.
#   LOAD_SECONDS=10 bash benches/load.sh nearest-peer
#
# Per-identity rate limits are lifted for the run (the load comes from a
# handful of identities); everything else is the shipped configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCENARIOS=${*:-ingest-mqtt ingest-ws fanout}
DURATION=${LOAD_SECONDS:-15}

# LOAD_BIN names a directory of already built binaries (eoc-server,
# eoc-load, eoc-naive-fanout) to measure instead, e.g. an older build.
if [ -n "${LOAD_BIN:-}" ]; then
  BIN=$LOAD_BIN
else
  cargo build --release -p eoc-server --bins
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MQTT_PORT=$(free_port)
HTTP_PORT=$(free_port)
DATA=$WORK/data

CHAIR=$("$BIN/eoc-server" user add load-chair --role chair --data "$DATA" 2>/dev/null)
OPERATOR=$("$BIN/eoc-server" user add load-op --role operator --data "$DATA" 2>/dev/null)

# Only the nearest-query comparison runs without a broker.
NEED_MQTT=0
for s in $SCENARIOS; do [ "$s" = nearest-peer ] || NEED_MQTT=1; done
if [ "$NEED_MQTT" = 1 ]; then
  mkdir -p "$WORK/mosquitto"
  sed -e "s|^listener .*|listener $MQTT_PORT 127.0.0.1|" \
      -e "s|^password_file .*|password_file $DATA/mosquitto/passwd|" \
      -e "s|^acl_file .*|acl_file $DATA/mosquitto/acl|" \
      -e "s|^persistence_location .*|persistence_location $WORK/mosquitto/|" \
      -e "s|^log_dest .*|log_dest file $WORK/mosquitto.log|" \
      config/mosquitto/eoc.conf > "$WORK/mosquitto.conf"
  echo "user $(id -un)" >> "$WORK/mosquitto.conf"
  mosquitto -c "$WORK/mosquitto.conf" &
  PIDS+=($!)
  MQTT_ARGS=(--mqtt "mqtt://127.0.0.1:$MQTT_PORT")
  READY='"state":"connected"'
else
  MQTT_ARGS=(--no-mqtt)
  READY='"ready":true'
fi

EOC_ACCESS__RESPONDER_PER_S=10000000 EOC_ACCESS__OPERATOR_PER_S=10000000 \
  "$BIN/eoc-server" run --data "$DATA" --http "127.0.0.1:$HTTP_PORT" "${MQTT_ARGS[@]}" \
  2> "$WORK/server.log" &
SERVER=$!
PIDS+=("$SERVER")

for _ in $(seq 1 300); do
  if curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" | grep -q "$READY"; then break; fi
  sleep 0.1
done
curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" | grep -q "$READY" || {
  echo "the server did not become ready (with its broker connected, if any):" >&2
  tail -20 "$WORK/server.log" >&2
  exit 1
}
GENERATOR=("$BIN/eoc-load" --http "127.0.0.1:$HTTP_PORT" --token "$CHAIR" --mqtt "127.0.0.1:$MQTT_PORT"
      --mqtt-user load-op --mqtt-password "$OPERATOR" --duration-s "$DURATION")
LOAD=("${GENERATOR[@]}" --server-pid "$SERVER")

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $("$BIN/eoc-server" --version)"
if [ "$NEED_MQTT" = 1 ]; then echo "$(mosquitto -h | head -1)"; fi

# One fan-out run; its report is kept in $WORK/run-$1 for the summary.
fanout_run() {
  local name=$1; shift
  echo "-- $name (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  ${LOAD_WRAP:-} "${GENERATOR[@]}" "$@" | tee "$WORK/run-$name"
}
# "deliveries/s p50 p99 p99.9 max cpu rss" of one run's report.
fanout_figures() {
  awk '/^delivered/ {d=$(NF-1)} /^delivery/ {p50=$4; p99=$7; p999=$10; mx=$13}
       /^server/ {cpu=$3; rss=$(NF-1)} /^alert/ {al=$7}
       END {printf "%s %s %s %s %s %s %s %s", d, p50, p99, p999, mx, cpu, rss, (al==""?"-":al)}' "$WORK/run-$1"
}
for s in $SCENARIOS; do
  case $s in
    ingest-mqtt)
      echo "== ingest over MQTT: phones as fast as the broker acknowledges, one dashboard"
      "${LOAD[@]}" --via mqtt --rate "${LOAD_RATE:-0}" --phones 4 --dashboards 1 ;;
    ingest-ws)
      echo "== ingest over WebSocket: phones as fast as acknowledgements allow, one dashboard"
      "${LOAD[@]}" --via ws --rate "${LOAD_RATE:-0}" --phones 8 --dashboards 1 ;;
    fanout)
      echo "== fan-out: 250 positions/s over MQTT to 1,000 dashboards, 5 alerts"
      "${LOAD[@]}" --via mqtt --rate 250 --phones 2 --dashboards 1000 --alerts 5 ;;
    fanout-peer)
      DASHBOARDS=${LOAD_DASHBOARDS:-1000}
      PEER_PORT=$(free_port)
      "$BIN/eoc-naive-fanout" --listen "127.0.0.1:$PEER_PORT" 2> "$WORK/peer.log" &
      PEER=$!
      PIDS+=("$PEER")
      for _ in $(seq 1 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PEER_PORT") 2>/dev/null; then break; fi
        sleep 0.1
      done
      echo "== fan-out, eoc and the naive peer: positions/s to $DASHBOARDS dashboards, ${DURATION} s each"
      for rate in ${LOAD_RATES:-100 250 500}; do
        fanout_run "eoc-$rate" --server-pid "$SERVER" --via mqtt --rate "$rate" --phones 2 --dashboards "$DASHBOARDS" \
          --alerts "${LOAD_ALERTS:-5}" --alert-magnitude "${LOAD_ALERT_MAGNITUDE:-6.0}"
        sleep 2
        [ "${LOAD_PEER:-1}" = 0 ] && continue
        # The peer: the same dashboards and team deltas; --server-pid is the peer's.
        fanout_run "peer-$rate" --peer "127.0.0.1:$PEER_PORT" --server-pid "$PEER" --rate "$rate" --phones 1 \
          --dashboards "$DASHBOARDS"
        sleep 2
      done
      echo "== summary (delivery latency from the server's timestamp to the dashboard, ms)"
      echo "| positions/s | server | deliveries/s | p50 | p99 | p99.9 | max | CPU % of a core | RSS MB | alert p99 |"
      echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
      for rate in ${LOAD_RATES:-100 250 500}; do
        read -r ed e50 e99 e999 emax ecpu erss eal <<< "$(fanout_figures "eoc-$rate")"
        read -r pd p50 p99 p999 pmax pcpu prss _ <<< "$(fanout_figures "peer-$rate" 2>/dev/null)"
        echo "| $rate | eoc | $ed | $e50 | $e99 | $e999 | $emax | $ecpu | $erss | $eal |"
        [ -f "$WORK/run-peer-$rate" ] || continue
        echo "| $rate | peer | $pd | $p50 | $p99 | $p999 | $pmax | $pcpu | $prss | - |"
        awk -v a="$ed" -v b="$pd" -v c="$e99" -v d="$p99" -v e="$ecpu" -v f="$pcpu" \
          'function r(x, y) { return y > 0 ? sprintf("%.2f×", x / y) : "-" }
           BEGIN {printf "| %s | eoc/peer | %s | | %s | | | %s | | |\n", "'"$rate"'", r(a, b), r(c, d), r(e, f)}'
      done ;;
    nearest-peer)
      RUNS=${LOAD_RUNS:-3}
      echo "== nearest sites: eoc over HTTP against Redis GEOSEARCH, 50 connections each, ${DURATION} s per row, $RUNS runs"
      for run in $(seq 1 "$RUNS"); do
        echo "-- run $run (load average $(cut -d' ' -f1-3 /proc/loadavg))"
        "${GENERATOR[@]}" --server-pid "$SERVER" nearest --redis "${REDIS:-127.0.0.1:6379}" | tee "$WORK/nearest-$run"
      done
      echo "== medians of $RUNS runs"
      python3 - "$WORK"/nearest-* <<'PY'
import statistics, sys
rows = {}
for path in sys.argv[1:]:
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 10 and cells[0].isdigit():
            rows.setdefault((cells[0], cells[1]), []).append(cells[2:])
print("| k | server and query | q/s | p50 ms | p99 ms | p99.9 ms | max ms | server CPU | generator CPU |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
med = {}
for (k, what), runs in rows.items():
    cols = []
    for i in range(7):
        values = [float(r[i].split()[0]) for r in runs if r[i].split()[0] not in ("–", "-")]
        cols.append(statistics.median(values) if values else float("nan"))
    med[(k, what)] = cols
    print(f"| {k} | {what} | {cols[0]:.0f} | {cols[1]:.2f} | {cols[2]:.2f} | {cols[3]:.2f} | {cols[4]:.2f} | {cols[5]:.0f} % | {cols[6]:.0f} % |")
for (k, what), cols in med.items():
    if what.startswith("eoc"):
        for (k2, other), ocols in med.items():
            if k2 == k and other.startswith("Redis"):
                print(f"k = {k}: eoc / {other}: {cols[0] / ocols[0]:.2f}x q/s; p99 {cols[2]:.2f} ms against {ocols[2]:.2f} ms")
PY
      ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done
