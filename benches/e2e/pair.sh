#!/usr/bin/env bash
# Paired runs: two proxies measured at the same time, under the same load, so that the
# machine's drift (a shared 2-CPU machine moves single rounds by up to 25 %) moves both alike.
# Tells small differences apart (a layer's cost, one build against another) where run.sh and
# interleave.sh, which measure one proxy after the other, cannot: the same proxy against
# itself reads 1.000 ± 0.01.
#
#   benches/e2e/pair.sh ROUNDS SECONDS RATE A B
#   benches/e2e/pair.sh 6 6 0 proxy proxy:--stack:resilience   # what the resilience layers cost
#   benches/e2e/pair.sh 6 6 0 proxy proxy:--stack:retry        # the retry layer alone
#   benches/e2e/pair.sh 6 6 0 haproxy haproxy:resilience        # HAProxy's equivalents
#   benches/e2e/pair.sh 6 6 0 /tmp/e2e_proxy.old:proxy proxy    # an older build against this one
#   benches/e2e/pair.sh 6 6 0 nginx proxy                       # tower-lb against nginx
#
# A and B are `e2e_proxy` modes with their arguments joined by `:` (a mode that starts with an
# absolute path runs that binary instead of this checkout's), `nginx` (one worker, as in run.sh),
# or `haproxy` (one thread, as in run.sh) or `haproxy:resilience`, `haproxy:rate-limit`, `haproxy:retry`, `haproxy:observe`:
# HAProxy with what comes closest to the resilience layers of `--stack resilience` (a stick
# table counting each client address's request rate, with a deny far above it; `retries 2`
# with `retry-on conn-failure empty-response response-timeout 502 503 504` and `option
# redispatch`, as the retry policy's defaults; `observe layer7` with `error-limit` and
# `on-error mark-down`, its passive health, as the breaker; `timeout server 5s` as the
# per-attempt timeout: HAProxy's other timeouts are in its base configuration anyway), or one
# of them alone.
#
# Each round starts both afresh (the order of their ports swaps every other round), warms them
# for a second, then loads both at once for SECONDS: closed loop (`wrk -t1 -c64`) with RATE 0,
# the default, else `oha -q RATE -c 32` each. CPU per request is the process's run time from
# `/proc/PID/task/*/schedstat` (nanoseconds, user and system together; nginx's worker counted
# with its master) over the responses
# counted by the load generator. Prints each round and the median of the per-round ratios B/A.
# Backends on ports 19301-19303, proxies on 18501 and up. Installs haproxy, wrk (apt-get) and
# oha (cargo) when missing. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 5 ] || { echo "usage: $0 ROUNDS SECONDS RATE A B" >&2; exit 2; }
ROUNDS=$1
SECS=$2
RATE=$3
SPECS=("$4" "$5")
WORK=$(mktemp -d /tmp/pair.XXXXXX)
BACKENDS=(127.0.0.1:19301 127.0.0.1:19302 127.0.0.1:19303)
# shellcheck source=benches/e2e/common.sh
. benches/e2e/common.sh
install_missing nginx haproxy wrk python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
need oha || cargo install --locked oha >/dev/null
build_bench_proxy
"$BIN" backends "${BACKENDS[@]}" &
PIDS+=($!)
sleep 0.5

# on FEATURE: whether VARIANT (none, resilience or one feature) has FEATURE.
on() { [ "$VARIANT" = resilience ] || [ "$VARIANT" = "$1" ]; }

# haproxy_pair_cfg VARIANT PORT FILE: HAProxy (one thread) with none, all or one of the
# features named above.
haproxy_pair_cfg() {
  VARIANT=$1
  {
    printf 'global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode http\n'
    printf '  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n'
    printf '  option forwardfor\n  http-reuse always\nfrontend f\n  bind 127.0.0.1:%s\n' "$2"
    if on rate-limit; then
      printf '  stick-table type ip size 100k expire 30s store http_req_rate(1s)\n'
      printf '  http-request track-sc0 src\n'
      printf '  http-request deny deny_status 429 if { sc_http_req_rate(0) gt 10000000 }\n'
    fi
    printf '  default_backend b\nbackend b\n  balance roundrobin\n'
    if on retry; then
      printf '  retries 2\n  option redispatch\n  timeout server 5s\n'
      printf '  retry-on conn-failure empty-response response-timeout 502 503 504\n'
    fi
    local i=0 b
    for b in "${BACKENDS[@]}"; do
      i=$((i + 1))
      if on observe; then
        printf '  server s%s %s check inter 10s observe layer7 error-limit 10 on-error mark-down\n' "$i" "$b"
      else
        printf '  server s%s %s\n' "$i" "$b"
      fi
    done
  } >"$3"
}

# cpu_ns PID: the run time of every thread of PID and of its children so far, in nanoseconds.
cpu_ns() {
  local p
  for p in "$1" $(pgrep -P "$1"); do cat /proc/"$p"/task/*/schedstat; done |
    awk '{s += $1} END {print s}'
}

for r in $(seq "$ROUNDS"); do
  pids=() ports=()
  for k in 0 1; do
    port=$((18501 + (k + r) % 2))
    IFS=: read -r -a args <<<"${SPECS[$k]}"
    if [ "${args[0]}" = haproxy ]; then
      haproxy_pair_cfg "${args[1]:-none}" "$port" "$WORK/h-$port.cfg"
      haproxy -f "$WORK/h-$port.cfg" -db &
    elif [ "${args[0]}" = nginx ]; then
      nginx_cfg 1 "$port" "$WORK/n-$port"
      "$NGINX" -c "$WORK/n-$port/nginx.conf" -p "$WORK/n-$port" &
    else
      start_bench_proxy "${SPECS[$k]}" "$port"
    fi
    pids+=($!) ports+=("$port")
    PIDS+=($!)
  done
  sleep 0.5
  warm=()
  for p in "${ports[@]}"; do
    wrk -t1 -c64 -d1s "http://127.0.0.1:$p/" >/dev/null &
    warm+=($!)
  done
  wait "${warm[@]}"
  t0=() load=()
  for k in 0 1; do t0+=("$(cpu_ns "${pids[$k]}")"); done
  for k in 0 1; do
    if [ "$RATE" = 0 ]; then
      wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:${ports[$k]}/" >"$WORK/load-$k" &
    else
      oha -z "${SECS}s" -q "$RATE" -c 32 --no-tui --latency-correction \
        "http://127.0.0.1:${ports[$k]}/" >"$WORK/load-$k" &
    fi
    load+=($!)
  done
  wait "${load[@]}"
  line=$r
  for k in 0 1; do
    t1=$(cpu_ns "${pids[$k]}")
    if [ "$RATE" = 0 ]; then
      n=$(awk '/requests in/{print $1}' "$WORK/load-$k")
    else
      n=$(awk '/\[200\]/{print $2}' "$WORK/load-$k")
    fi
    line+=" $(python3 -c "print(f'{($t1 - ${t0[$k]}) / 1e3 / $n:.3f} $n')")"
    kill "${pids[$k]}"
    wait "${pids[$k]}" 2>/dev/null || true
  done
  echo "$line" | tee -a "$WORK/results"
done
python3 - "$WORK/results" "${SPECS[@]}" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
a = [float(r[1]) for r in rows]
b = [float(r[3]) for r in rows]
ratios = [y / x for x, y in zip(a, b)]
print(f"A {sys.argv[2]}: {statistics.median(a):.3f} us CPU per request (median)")
print(f"B {sys.argv[3]}: {statistics.median(b):.3f} us CPU per request (median)")
print(f"B/A paired: {statistics.median(ratios):.3f}  (per round: {' '.join(f'{x:.3f}' for x in ratios)})")
EOF
