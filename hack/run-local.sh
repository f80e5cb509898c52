#!/usr/bin/env bash
# Runs the sample app on loopback and drives 5 s of strict nodrop load
# through it; a healthy app must lose nothing.
set -euo pipefail
port=${1:-18080}
cd "$(dirname "$0")/.."
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	echo "run: port $port on 127.0.0.1 is already in use; set RUN_PORT to a free port" >&2
	exit 2
fi
log=$(mktemp)
./bin/app --listen "127.0.0.1:$port" --pod local --graceful drain --drain-period 1s >"$log" &
app=$!
trap 'kill $app 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 50); do
	grep -q '"event":"ready"' "$log" && break
	sleep 0.1
done
grep -q '"event":"ready"' "$log" || { echo "run: app did not become ready:" >&2; cat "$log" >&2; exit 1; }

echo "== steady load: 5 s at 1000/s, keep-alive, strict"
./bin/nodrop load --url "http://127.0.0.1:$port/" --rate 1000 --duration 5s

echo
echo "== app lifecycle"
cat "$log"
