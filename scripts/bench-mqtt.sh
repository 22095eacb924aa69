#!/usr/bin/env bash
# End-to-end MQTT ingest: samples per second from a local mosquitto into the
# twin's ECS world, and the twin's CPU per sample.
#
#   bash scripts/bench-mqtt.sh [MESSAGES_PER_PUBLISHER] [PUBLISHERS]
#
# Starts mosquitto on a free loopback port, `twin run` (release) subscribed to
# PUBLISHERS topics with JSON payloads, then PUBLISHERS `mosquitto_pub -l`
# processes that each publish MESSAGES_PER_PUBLISHER distinct payloads at
# QoS 0 as fast as they can. The twin reports how many samples it ingested
# when it stops; the rate is that count over the publishing window. On a
# 2-core machine broker, publishers and twin share the CPU, so the rate is a
# floor for the twin; its own CPU-seconds per million samples are reported
# too. The in-process decode+ingest figure is `cargo bench --bench mqtt_ingest`.
set -euo pipefail
cd "$(dirname "$0")/.."
per="${1:-250000}"
pubs="${2:-4}"
cargo build --release --locked >/dev/null
bin=./target/release/twin
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$tmp/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
CONF
mosquitto -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
sleep 0.5

{
  printf '[plant]\nname = "mqtt e2e bench"\ntick = "100ms"\nstale_after = "1h"\n'
  printf '[[sources.mqtt]]\nname = "cm"\nbroker = "mqtt://127.0.0.1:%s"\nclean_session = true\n' "$port"
  for i in $(seq 0 $((pubs - 1))); do
    printf '[[sources.mqtt.topics]]\ntopic = "bench/m%s/vibration"\ntag = "m%s.vibration"\npayload = "json"\nfield = "data.rms"\nqos = 0\n' "$i" "$i"
  done
} >"$tmp/plant.toml"
"$bin" check "$tmp/plant.toml" >/dev/null

"$bin" run "$tmp/plant.toml" --for 120s --events /dev/null --no-table 2>"$tmp/twin.log" &
twin=$!
for _ in $(seq 100); do grep -q "Connected to MQTT broker" "$tmp/twin.log" && break; sleep 0.1; done

for i in $(seq 0 $((pubs - 1))); do
  python3 -c "
import sys
w = sys.stdout.write
for k in range($per):
    w('{\"device\":\"m$i\",\"seq\":%d,\"data\":{\"rms\":%d,\"peak\":%d}}\n' % (k, k, 3 * k))
" >"$tmp/payloads-$i.txt"
done

ticks=$(getconf CLK_TCK)
read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$twin/stat")
t0=$(date +%s.%N)
for i in $(seq 0 $((pubs - 1))); do
  mosquitto_pub -p "$port" -h 127.0.0.1 -q 0 -t "bench/m$i/vibration" -l <"$tmp/payloads-$i.txt" &
done
wait $(jobs -p | grep -v "^$twin$" | grep -v "$(pgrep -f "mosquitto -c $tmp" || echo none)") 2>/dev/null || true
for p in $(pgrep -f "mosquitto_pub -p $port" || true); do wait "$p" 2>/dev/null || true; done
t1=$(date +%s.%N)
sleep 1   # let the twin drain its socket
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$twin/stat")
kill -TERM "$twin"
wait "$twin" || true

samples=$(grep -o 'samples=[0-9]*' "$tmp/twin.log" | tail -1 | cut -d= -f2)
sent=$((per * pubs))
awk -v n="$samples" -v sent="$sent" -v t0="$t0" -v t1="$t1" -v cpu="$((u1 + s1 - u0 - s0))" -v hz="$ticks" 'BEGIN {
  w = t1 - t0
  printf "published %d messages in %.2f s (%.0f msg/s)\n", sent, w, sent / w
  printf "twin ingested %d samples (%.1f %%): %.0f samples/s end to end\n", n, 100 * n / sent, n / w
  printf "twin CPU: %.2f s, %.2f CPU-s per million samples\n", cpu / hz, (cpu / hz) / (n / 1e6)
}'
