#!/usr/bin/env bash
# Modbus polling, twin against Node-RED, on one loopback server process.
#
#   bash scripts/bench-modbus.sh [INTERVAL_MS] [WINDOW_S]
#
# 1. Builds the release `twin` and writes a plant file with 20 devices × 500
#    u16 holding registers (contiguous, so 4 reads of 125 per device and 80
#    per poll cycle), polled every INTERVAL_MS (default 100; the schema's
#    minimum is 10).
# 2. Starts ONE `twin sim` process serving all 20 devices on 20 free loopback
#    ports (`--modbus-port '*=0'`).
# 3. Runs `twin run` against it, then Node-RED 4 with node-red-contrib-modbus
#    (npm, pinned in scripts/nodered/package.json, installed once into
#    target/nodered) reading the same 80 blocks of 125 registers on the same
#    interval, one after the other, never both at once.
# 4. For each client, after WARMUP_S (default 8) seconds, measures for
#    WINDOW_S seconds (default 20):
#    - its CPU: utime + stime of the client process from /proc/PID/stat;
#    - the reads it made, counted on the server side from the kernel's TCP
#      counters of the server's sockets (`ss -ti`: bytes_received,
#      bytes_sent). Every request is a 12-byte ADU and every reply to a
#      125-register read a 259-byte ADU, so requests = Δbytes_received / 12,
#      replies = Δbytes_sent / 259 and tag reads = replies × 125. The same
#      count for both clients, independent of either one's own bookkeeping.
#    and prints tags/s, CPU-seconds per 10,000 tag reads, tags per CPU-second
#    and the ratio twin / Node-RED.
#
# Needs: cargo, node (v20: Node-RED 4; Node-RED 5 needs Node 22), npm, ss
# (iproute2). Uses the network only for the one-time `npm install`. Every
# socket is on 127.0.0.1. Environment: WARMUP_S, NODERED_DIR (default
# target/nodered), TWIN_BIN (skip the build and use this binary), KEEP_TMP=1
# (keep the scratch dir with the generated files and logs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

interval_ms="${1:-100}"
window_s="${2:-20}"
warmup_s="${WARMUP_S:-8}"
devices=20
registers=500
read_regs=125
req_bytes=12                          # MBAP 7 + function 1 + address 2 + count 2
reply_bytes=$((7 + 2 + 2 * read_regs)) # MBAP 7 + function 1 + byte count 1 + data
nr_dir="${NODERED_DIR:-$root/target/nodered}"
ticks=$(getconf CLK_TCK)

if ! [[ "$interval_ms" =~ ^[0-9]+$ ]] || ((interval_ms < 10)); then
  echo "INTERVAL_MS must be a whole number of milliseconds, at least 10" >&2
  exit 2
fi

# --- build --------------------------------------------------------------------
if [[ -n "${TWIN_BIN:-}" ]]; then
  bin="$TWIN_BIN"
else
  echo "building release twin..." >&2
  cargo build --release --locked --bin twin >&2
  bin="${CARGO_TARGET_DIR:-$root/target}/release/twin"
fi

# --- Node-RED (once) ------------------------------------------------------------
if ! cmp -s scripts/nodered/package.json "$nr_dir/package.json" ||
  [[ ! -f "$nr_dir/node_modules/node-red/red.js" ]] ||
  [[ ! -d "$nr_dir/node_modules/node-red-contrib-modbus" ]]; then
  echo "installing Node-RED into $nr_dir (npm)..." >&2
  mkdir -p "$nr_dir"
  cp scripts/nodered/package.json "$nr_dir/package.json"
  (cd "$nr_dir" && npm install --no-audit --no-fund --omit=dev --loglevel=error >&2)
fi

# --- scratch dir and clean-up -----------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/twin-bench-modbus.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  if [[ -n "${KEEP_TMP:-}" ]]; then
    echo "kept $tmp (plant.toml, ep.json, logs, Node-RED flows.json and settings.js)" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# --- the plant file ---------------------------------------------------------------
{
  # The tick is at most the poll interval, as plant-configs/reference.toml
  # advises: the core drains the sample channel (65,536 samples) once per
  # tick, so a 100 ms tick under a 10 ms poll would stall the pollers.
  printf '[plant]\nname = "modbus bench"\ntick = "%dms"\nstale_after = "5s"\n' $((interval_ms < 100 ? interval_ms : 100))
  for ((d = 0; d < devices; d++)); do
    printf '\n[[sources.modbus]]\nname = "d%02d"\naddress = "127.0.0.1:%d"\n' "$d" $((15000 + d))
    printf 'poll_interval = "%dms"\ntimeout = "2s"\nregisters = [\n' "$interval_ms"
    for ((r = 0; r < registers; r++)); do
      printf '  { tag = "d%02d.r%03d", table = "holding", address = %d, type = "u16" },\n' "$d" "$r" "$r"
    done
    printf ']\n'
  done
} >"$tmp/plant.toml"
"$bin" check "$tmp/plant.toml" >/dev/null

# --- the server -------------------------------------------------------------------
"$bin" sim "$tmp/plant.toml" --modbus-port '*=0' --endpoints-out "$tmp/ep.json" \
  >"$tmp/sim.out" 2>"$tmp/sim.err" &
sim_pid=$!
pids+=("$sim_pid")
for _ in $(seq 100); do
  [[ -s "$tmp/ep.json" ]] && break
  kill -0 "$sim_pid" 2>/dev/null || { cat "$tmp/sim.err" >&2; exit 1; }
  sleep 0.1
done
[[ -s "$tmp/ep.json" ]] || { echo "twin sim did not write its endpoints" >&2; exit 1; }
mapfile -t ports < <(grep -o '127\.0\.0\.1:[0-9]*' "$tmp/ep.json" | cut -d: -f2)
((${#ports[@]} == devices)) || { echo "expected $devices endpoints, got ${#ports[@]}" >&2; exit 1; }
ss_filter="( $(printf 'sport = :%s or ' "${ports[@]}" | sed 's/ or $//') )"

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# utime + stime of a process's main thread alone (the name may hold spaces:
# count fields after the closing parenthesis).
main_thread_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/task/$1/stat"; }

# "connections bytes_received bytes_sent" over the server's established sockets.
server_bytes() {
  ss -tinH state established "$ss_filter" | awk '
    /^[0-9]/ { conns++ }
    {
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^bytes_received:/) { split($i, a, ":"); rx += a[2] }
        if ($i ~ /^bytes_sent:/) { split($i, a, ":"); tx += a[2] }
      }
    }
    END { printf "%d %d %d\n", conns, rx, tx }'
}

# measure NAME PID: wait out the warm-up, then count over the window.
# Sets m_tags m_cpu_s m_requests m_replies m_server_cpu_s m_wall.
measure() {
  local name=$1 pid=$2
  sleep "$warmup_s"
  kill -0 "$pid" 2>/dev/null || { echo "$name exited during the warm-up" >&2; return 1; }
  local c0 s0 t0 conns0 rx0 tx0 c1 s1 t1 conns1 rx1 tx1 main0 main1
  read -r conns0 rx0 tx0 < <(server_bytes)
  c0=$(cpu_ticks "$pid"); s0=$(cpu_ticks "$sim_pid"); main0=$(main_thread_ticks "$pid"); t0=$(date +%s.%N)
  sleep "$window_s"
  read -r conns1 rx1 tx1 < <(server_bytes)
  c1=$(cpu_ticks "$pid"); s1=$(cpu_ticks "$sim_pid"); main1=$(main_thread_ticks "$pid"); t1=$(date +%s.%N)
  if ((conns0 != devices || conns1 != devices)); then
    echo "warning: $name had $conns0 then $conns1 connections (expected $devices): reconnects lose counts" >&2
  fi
  m_wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  m_requests=$(((rx1 - rx0) / req_bytes))
  m_replies=$(((tx1 - tx0) / reply_bytes))
  if (((rx1 - rx0) % req_bytes != 0 || (tx1 - tx0) % reply_bytes != 0)); then
    echo "warning: $name: server bytes not a whole number of requests/replies (exceptions or partial frames)" >&2
  fi
  m_tags=$((m_replies * read_regs))
  m_cpu_s=$(awk -v a=$((c1 - c0)) -v hz="$ticks" 'BEGIN { print a / hz }')
  m_server_cpu_s=$(awk -v a=$((s1 - s0)) -v hz="$ticks" 'BEGIN { print a / hz }')
  m_main_cpu_s=$(awk -v a=$((main1 - main0)) -v hz="$ticks" 'BEGIN { print a / hz }')
}

declare -A tags_s cpu_10k tags_cpu srv_10k reqs reps cpus walls
record() {
  local name=$1
  tags_s[$name]=$(awk -v n="$m_tags" -v w="$m_wall" 'BEGIN { printf "%.0f", n / w }')
  cpu_10k[$name]=$(awk -v c="$m_cpu_s" -v n="$m_tags" 'BEGIN { printf "%.5f", n ? c / (n / 10000) : 0 }')
  tags_cpu[$name]=$(awk -v c="$m_cpu_s" -v n="$m_tags" 'BEGIN { printf "%.0f", c ? n / c : 0 }')
  srv_10k[$name]=$(awk -v c="$m_server_cpu_s" -v n="$m_tags" 'BEGIN { printf "%.5f", n ? c / (n / 10000) : 0 }')
  reqs[$name]=$m_requests
  reps[$name]=$m_replies
  cpus[$name]=$m_cpu_s
  walls[$name]=$m_wall
}

run_for=$((warmup_s + window_s + 3))

# --- (i) twin -----------------------------------------------------------------------
echo "twin run: ${devices} devices × ${registers} tags every ${interval_ms} ms; warm-up ${warmup_s} s, window ${window_s} s" >&2
"$bin" run "$tmp/plant.toml" --endpoints "$tmp/ep.json" --for "${run_for}s" \
  --events /dev/null --no-table >"$tmp/twin.out" 2>"$tmp/twin.err" &
twin_pid=$!
pids+=("$twin_pid")
measure twin "$twin_pid"
record twin
# `twin run`'s main thread runs the core (the tick loop: ingest, events);
# the runtime's worker threads run the pollers and links. Their share alone
# is the cost of polling, the part Node-RED also does.
total_cpu_s=$m_cpu_s
m_cpu_s=$(awk -v a="$total_cpu_s" -v b="$m_main_cpu_s" 'BEGIN { print a - b }')
record "twin:poll"
m_cpu_s=$m_main_cpu_s
record "twin:core"
wait "$twin_pid" || { echo "twin run failed:" >&2; tail -5 "$tmp/twin.err" >&2; exit 1; }
twin_samples=$(grep -o 'samples=[0-9]*' "$tmp/twin.err" | tail -1 | cut -d= -f2 || true)

# --- (ii) Node-RED ------------------------------------------------------------------
echo "Node-RED: same map, same interval, same server" >&2
mkdir -p "$tmp/nr"
ln -s "$nr_dir/node_modules" "$tmp/nr/node_modules"
node scripts/nodered/make-flow.js scripts/nodered/flow.template.json "$tmp/ep.json" \
  "$registers" "$interval_ms" >"$tmp/nr/flows.json"
cat >"$tmp/nr/settings.js" <<'EOF'
// Headless Node-RED for the benchmark: no HTTP server, no editor, no
// telemetry, nothing installed at run time; only warnings are logged.
module.exports = {
  flowFile: 'flows.json',
  credentialSecret: false,
  httpAdminRoot: false,
  httpNodeRoot: false,
  telemetry: { enabled: false },
  diagnostics: { enabled: false, ui: false },
  externalModules: { autoInstall: false, palette: { allowInstall: false } },
  editorTheme: { projects: { enabled: false } },
  logging: { console: { level: 'warn', metrics: false, audit: false } },
};
EOF
node "$nr_dir/node_modules/node-red/red.js" --settings "$tmp/nr/settings.js" \
  --userDir "$tmp/nr" >"$tmp/nr.out" 2>&1 &
nr_pid=$!
pids+=("$nr_pid")
measure node-red "$nr_pid"
record node-red
kill "$nr_pid" 2>/dev/null || true
wait "$nr_pid" 2>/dev/null || true
if grep -qi 'error' "$tmp/nr.out"; then
  echo "Node-RED logged errors:" >&2
  grep -i 'error' "$tmp/nr.out" | head -5 >&2
fi

# --- summary ----------------------------------------------------------------------
target=$((devices * registers * 1000 / interval_ms))
echo
echo "Modbus polling: ${devices} devices × ${registers} u16 holding registers = $((devices * registers)) tags,"
echo "$((devices * registers / read_regs)) reads of ${read_regs} per cycle, every ${interval_ms} ms (target ${target} tags/s),"
echo "one loopback server process (twin sim); ${window_s} s window after ${warmup_s} s warm-up; $(nproc) cores."
echo
printf '%-10s %12s %12s %10s %10s %16s %16s %16s\n' \
  client "tags/s" "% target" requests replies "CPU-s/10k reads" "tags per CPU-s" "server CPU/10k"
for n in twin "twin:poll" "twin:core" node-red; do
  printf '%-10s %12s %11.1f%% %10s %10s %16s %16s %16s\n' "$n" "${tags_s[$n]}" \
    "$(awk -v a="${tags_s[$n]}" -v t="$target" 'BEGIN { print a / t * 100 }')" \
    "${reqs[$n]}" "${reps[$n]}" "${cpu_10k[$n]}" "${tags_cpu[$n]}" "${srv_10k[$n]}"
done
echo
awk -v a="${tags_cpu[twin]}" -v p="${tags_cpu[twin:poll]}" -v b="${tags_cpu[node-red]}" 'BEGIN {
  if (b > 0) {
    printf "ratio, tags per CPU-second, twin (whole process) / Node-RED: %.1f× (goal ≥ 10×)\n", a / b
    printf "ratio, tags per CPU-second, twin polling only / Node-RED:    %.1f×\n", p / b
  } else print "ratio: Node-RED made no reads"
}'
echo "twin:poll = the runtime's worker threads (pollers, links, socket I/O); twin:core = the main"
echo "thread (samples into the core, ticks, change events encoded to /dev/null)."
echo "client CPU in the window: twin ${cpus[twin]} s, Node-RED ${cpus[node-red]} s (utime+stime, /proc/PID/stat, 1/${ticks} s resolution)"
if [[ -n "$twin_samples" ]]; then
  echo "twin's own count: ${twin_samples} samples pushed to the core over the whole run (${run_for} s incl. connect)"
fi
