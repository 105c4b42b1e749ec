#!/usr/bin/env bash
# Instructions per forwarded request, counted by callgrind: deterministic where the timings of
# run.sh are not (a shared 2-CPU machine moves single rounds by up to 25 %), so it tells small
# changes apart. Counts user-space instructions only: system calls and the kernel's work (most
# of a proxy's CPU here) are not in it, so compare like with like.
#
#   benches/e2e/instructions.sh [N] -- MODE [ARGS...]
#   benches/e2e/instructions.sh 40000 -- proxy                # tower-lb, bare
#   benches/e2e/instructions.sh 40000 -- proxy --stack resilience  # with the resilience layers
#   benches/e2e/instructions.sh 40000 -- proxy --stack full   # with resilience and 20 rules
#   benches/e2e/instructions.sh 40000 -- floor                # hyper alone
#   benches/e2e/instructions.sh 40000 -- codec-floor          # no hyper: httparse and tokio
#   BODY_BYTES=100 benches/e2e/instructions.sh 40000 -- proxy # POSTs with a 100-byte body
#
# Runs `e2e_proxy MODE ARGS` under `valgrind --tool=callgrind` twice, against its own three
# backends (ports 19101-19103, or BACKEND_PORT and the next two; the proxy on PORT, 18991), once serving 2 000 requests and once 2 000 + N (`oha -c 64`),
# and prints (second total - first total) / N: start-up, warm-up and the pool's first
# connections cancel out. Runs of the same binary differ by about 1 % (the clock calibration at
# start-up varies); quote medians of a few runs. Builds the proxy with the `release-lto`
# profile, as the other end-to-end scripts do (`PROFILE=release`: the default release profile).
# Installs valgrind with apt-get and oha with cargo when missing. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=40000
if [ "${1:-}" != "--" ]; then N=$1; shift; fi
[ "${1:-}" = "--" ] && shift
[ $# -ge 1 ] || { echo "usage: $0 [N] -- MODE [ARGS...]" >&2; exit 2; }

if ! command -v valgrind >/dev/null; then
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
if ! command -v oha >/dev/null; then
  cargo install --locked oha >/dev/null
fi
PROFILE=${PROFILE:-release-lto}
cargo build --profile "$PROFILE" --quiet --features server,governor --example e2e_proxy
BIN=target/$PROFILE/examples/e2e_proxy
WORK=$(mktemp -d)
# Ports: PORT for the proxy, BACKEND_PORT and the next two for the backends (two runs at once
# need their own).
PORT=${PORT:-18991}
B=${BACKEND_PORT:-19101}
BACKENDS=(127.0.0.1:$B 127.0.0.1:$((B + 1)) 127.0.0.1:$((B + 2)))
# BODY_BYTES: POSTs with a body of that many bytes instead of GETs.
METHOD=()
if [ -n "${BODY_BYTES:-}" ]; then
  METHOD=(-m POST -d "$(head -c "$BODY_BYTES" /dev/zero | tr '\0' x)")
fi

"$BIN" backends "${BACKENDS[@]}" &
BPID=$!
trap 'kill $BPID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

count() { # requests -> total instructions
  local args=("$@")
  args=("${args[@]:1}")
  for b in "${BACKENDS[@]}"; do args+=(--backend "$b"); done
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN" "${args[@]}" \
    --listen "127.0.0.1:$PORT" 2>"$WORK/cg.log" &
  local pid=$!
  for _ in $(seq 1 150); do
    sleep 0.2
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
  done
  oha -n "$1" -c 64 --no-tui "${METHOD[@]}" "http://127.0.0.1:$PORT/" >/dev/null
  kill -INT $pid
  sleep 0.5
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  awk '/I *refs:/{gsub(",", "", $NF); print $NF}' "$WORK/cg.log"
}

first=$(count 2000 "$@")
second=$(count $((2000 + N)) "$@")
python3 -c "import sys; print(f'{(int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3]):.0f} instructions per request ({sys.argv[4]})')" \
  "$first" "$second" "$N" "$*${BODY_BYTES:+, POST with $BODY_BYTES bytes}"
