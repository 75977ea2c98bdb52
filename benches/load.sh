#!/usr/bin/env bash
# End-to-end load scenarios of BENCHMARKS.md: a real mosquitto started from
# config/mosquitto/eoc.conf (as tests/support/mosquitto.rs does: only the
# listener, file paths, persistence and log are rewritten), a release
# eoc-server on the Tajikistan scenario with a fresh data directory, and
# eoc-load playing phones, dashboards and a chair.
#
#   bash benches/load.sh                # every scenario
#   bash benches/load.sh ingest-mqtt    # one of: ingest-mqtt ingest-ws fanout
#   LOAD_SECONDS=30 bash benches/load.sh # longer runs (default 15 s each)
#   LOAD_RATE=40000 bash benches/load.sh ingest-mqtt  # a set rate instead of as fast as possible
#
# Per-identity rate limits are lifted for the run (the load comes from a
# handful of identities); everything else is the shipped configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCENARIOS=${*:-ingest-mqtt ingest-ws fanout}
DURATION=${LOAD_SECONDS:-15}

cargo build --release -p eoc-server --bins
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

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

EOC_ACCESS__RESPONDER_PER_S=10000000 EOC_ACCESS__OPERATOR_PER_S=10000000 \
  "$BIN/eoc-server" run --data "$DATA" --http "127.0.0.1:$HTTP_PORT" --mqtt "mqtt://127.0.0.1:$MQTT_PORT" \
  2> "$WORK/server.log" &
SERVER=$!
PIDS+=("$SERVER")

for _ in $(seq 1 300); do
  if curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" | grep -q '"state":"connected"'; then break; fi
  sleep 0.1
done
curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" | grep -q '"state":"connected"' || {
  echo "the server did not become ready with its broker connected:" >&2
  tail -20 "$WORK/server.log" >&2
  exit 1
}
LOAD=("$BIN/eoc-load" --http "127.0.0.1:$HTTP_PORT" --token "$CHAIR" --mqtt "127.0.0.1:$MQTT_PORT"
      --mqtt-user load-op --mqtt-password "$OPERATOR" --server-pid "$SERVER" --duration-s "$DURATION")

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(mosquitto -h | head -1)"
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
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
done
