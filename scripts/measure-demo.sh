#!/usr/bin/env bash
# Measures the demo's resident memory and CPU use while it runs.
#
#   bash scripts/measure-demo.sh [SECONDS] [--page]
#
# Runs the release build of `twin demo` (virtual plant + embedded broker +
# twin in one process) for SECONDS (default 60), samples VmRSS from
# /proc/PID/status every second, and reports peak and mean RSS and the CPU
# time (utime + stime from /proc/PID/stat) divided by wall time.
#
# With --page the demo also serves its web page (`--http 127.0.0.1:0`) and
# Debian's chromium, headless, keeps the page open for the whole run, so
# the figures include what serving a watching operator costs the twin (the
# browser's own use is not counted: it is not on the twin's machine).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
page="${2:-}"
cargo build --release --locked >/dev/null
bin=./target/release/twin
ticks=$(getconf CLK_TCK)

log=$(mktemp)
browser=
profile=
cleanup() {
  [ -n "$browser" ] && kill "$browser" 2>/dev/null || true
  [ -n "$profile" ] && rm -rf "$profile"
  rm -f "$log"
}
trap cleanup EXIT
if [ "$page" = "--page" ]; then
  "$bin" demo --for "${secs}s" --no-table --events /dev/null --http 127.0.0.1:0 2>"$log" &
  pid=$!
  url=
  for _ in $(seq 1 50); do
    url=$(grep -o 'url=http://[^ ]*' "$log" | head -1 | cut -d= -f2 || true)
    [ -n "$url" ] && break
    sleep 0.2
  done
  [ -n "$url" ] || { echo "the demo logged no url=" >&2; cat "$log" >&2; exit 1; }
  profile=$(mktemp -d)
  chromium --headless --no-sandbox --disable-gpu --user-data-dir="$profile" \
    --remote-debugging-port=0 "$url/" >/dev/null 2>&1 &
  browser=$!
  echo "page: $url/ open in headless chromium"
else
  "$bin" demo --for "${secs}s" --no-table --events /dev/null 2>/dev/null &
  pid=$!
fi
sleep 2   # let sources connect; measure the steady state
read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
t0=$(date +%s.%N)
peak=0; sum=0; n=0
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$rss" ] || break
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat" 2>/dev/null) || break
  t1=$(date +%s.%N)
  (( rss > peak )) && peak=$rss
  sum=$((sum + rss)); n=$((n + 1))
  sleep 1
done
wait "$pid" || true
cpu=$(awk -v a="$((u1 + s1 - u0 - s0))" -v hz="$ticks" -v w0="$t0" -v w1="$t1" \
  'BEGIN { printf "%.2f", a / hz / (w1 - w0) * 100 }')
wall=$(awk -v w0="$t0" -v w1="$t1" 'BEGIN { printf "%.1f", w1 - w0 }')
echo "demo: ${n} samples over ${wall} s"
echo "RSS peak: $((peak / 1024)) MiB, mean: $((sum / n / 1024)) MiB"
echo "CPU: ${cpu} % of one core (utime+stime / wall)"
