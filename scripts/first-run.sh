#!/usr/bin/env bash
# Runs the README's first command (`bash scripts/dev.sh`) as a newcomer would and reports how
# long it took until the service answered through its own Pushpin: GET /healthz and GET
# /channels on the public port. Ports, the store and Pushpin's folder are fresh (free loopback
# ports, a temp dir), so it can run beside anything. The service is stopped afterwards.
#
#   bash scripts/first-run.sh           # with this checkout's cargo cache and target folder
#   COLD=1 bash scripts/first-run.sh    # empty cargo home and target folder (a fresh machine)
#
# Prints `first-run: up in <s> s (cold=<0|1>)` and exits 0, or exits 1 after TIMEOUT_SECS
# (default 1800) with the tail of the service's output.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d /tmp/restream-first-run.XXXXXX)"
if [[ "${COLD:-0}" == 1 ]]; then
  export CARGO_HOME="$work/cargo-home" CARGO_TARGET_DIR="$work/target"
fi
ports=($(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
# Five consecutive ports for Pushpin: pick a base whose five are free.
import random
while True:
    base = random.randrange(20000, 60000)
    try:
        held = []
        for p in range(base, base + 5):
            s = socket.socket(); s.bind(("127.0.0.1", p)); held.append(s)
        print(base); break
    except OSError:
        for s in held: s.close()
'))
public=${ports[0]} backend=${ports[1]} base=${ports[2]}
export RESTREAM_DEV__PUBLIC_LISTEN="127.0.0.1:$public"
export RESTREAM_SERVER__LISTEN="127.0.0.1:$backend"
export RESTREAM_DEV__PUSHPIN_BASE_PORT="$base"
export RESTREAM_DEV__RUN_DIR="$work/pushpin"
export RESTREAM_STORE__PATH="$work/restream.redb"
log="$work/dev.log"
start=$(date +%s.%N)
setsid bash scripts/dev.sh >"$log" 2>&1 &
pid=$!
stop() { kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap stop EXIT
deadline=$(( $(date +%s) + ${TIMEOUT_SECS:-1800} ))
until curl -fsS "http://127.0.0.1:$public/healthz" >/dev/null 2>&1 \
  && curl -fsS "http://127.0.0.1:$public/channels" | grep -q usgs-earthquakes; do
  if ! kill -0 "$pid" 2>/dev/null || (( $(date +%s) > deadline )); then
    echo "first-run: the service did not come up; last lines of its output:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  sleep 1
done
up=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
echo "first-run: up in $up s (cold=${COLD:-0})"
stop
trap - EXIT
rm -rf "$work"
