#!/usr/bin/env bash
# End-to-end proxy benchmark: tower-lb's proxy against nginx and HAProxy on loopback, with the
# floor of any hyper-based proxy and that of a hand-written HTTP/1 codec beside them.
#
#   benches/e2e/run.sh                  # ROUNDS=3 DURATION=6 RATE=10000 by default
#   ROUNDS=5 DURATION=10 RATE=15000 benches/e2e/run.sh
#   PIN=1 benches/e2e/run.sh            # one-worker proxies on CPU 0, the load on the others
#   ONLY=towerlb-1,nginx-1,haproxy-1 ROUNDS=12 benches/e2e/run.sh   # some proxies, more rounds
#
# Installs what it needs (nginx, haproxy, wrk with apt-get; oha with `cargo install oha`),
# builds the bench proxy (`benches/e2e/proxy.rs`), starts three loopback backends answering
# 100 bytes (one thread), then measures, interleaved over ROUNDS rounds, one proxy at a time:
#
#   towerlb-1 / towerlb-2   tower-lb: Server + ForwardLayer + Balance + TargetClient, 1 / 2 workers
#                           (the ForwardLayer writes X-Forwarded-For, as nginx and HAProxy do here;
#                           `e2e_proxy proxy --headers default` writes the layer's four defaults)
#   towerlb-2pc             the same, 2 single-threaded runtimes with SO_REUSEPORT listeners
#   towerlb-full-1          the same with the resilience stack of examples/proxy.rs behind a
#                           router with 20 rules (every request matched against all 20), 1 worker
#   towerlb-legacy-1        the same as towerlb-1 with hyper-util's client (HttpClient)
#   hyper-floor-1           no tower-lb, no tower: hyper's http1 server + service_fn sending each
#                           request over one upstream hyper http1 connection of its own per client
#                           connection (backends round robin over connections), bodies streamed
#                           as is, 1 current-thread runtime (`e2e_proxy floor`). A lower bound, not
#                           a peer: no X-Forwarded-For (nginx and HAProxy add it), no hop-by-hop
#                           header work (tower-lb's ForwardLayer does it all), no pool, no timeouts
#   codec-floor-1           no hyper either: an HTTP/1 relay with its own codec on httparse and
#                           tokio, one upstream connection per client connection, hop-by-hop
#                           headers dropped and X-Forwarded-For added; Content-Length framing only
#                           (`e2e_proxy codec-floor`). What a proxy on tokio costs without hyper's
#                           codec: a lower bound, not a peer
#   nginx-1 / nginx-2       keepalive upstream (64), 1 / 2 worker processes
#   haproxy-1 / haproxy-2   http-reuse always, 1 / 2 threads
#
# Closed loop: `wrk -t1 -c64` for DURATION seconds (req/s, p50, p99, p99.9, and proxy CPU per
# request from /proc: user + system time of all the proxy's processes over the run, divided by
# the requests served). Open loop: `oha -q RATE -c64 --latency-correction` (p50, p99, p99.9 at a
# fixed rate; skipped if oha cannot be installed). Prints the medians over rounds, the ratios
# against nginx and HAProxy at the same worker count (of the medians, and the median of each
# round's own ratio: each proxy sits next to its peers in a list that every other round runs
# backwards), and the floor ratios: tower-lb /
# hyper-floor-1 (what tower-lb adds over hyper), hyper-floor-1 and codec-floor-1 / nginx-1,
# haproxy-1 (what hyper, and a codec of one's own, cost against them). Takes about
# 11 proxies x ROUNDS x (2 x DURATION + 2) seconds. Not part of CI.
#
# PIN=1 gives each one-worker proxy a CPU of its own: the proxies run on CPU 0 (`taskset`),
# the backends, wrk and oha on the other CPUs, so that no proxy shares its CPU with the load
# and each stays busy nearly all of a closed-loop run. With 2 CPUs the load's CPU is then as
# busy (the load spends about as much per request as a proxy): it bounds the loop as well.
# Two-worker proxies need every CPU and are left out of a pinned run.
#
# Besides the proxy's CPU per request, each round prints (and the medians show) the share of
# one CPU the proxy was busy ("busy"), the share of the whole machine that was busy ("machine
# busy") and what everything but the proxy spent per request ("load CPU": wrk and the
# backends): a proxy holds the closed loop back only while it is busy nearly all the run and
# the machine is not.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6}
RATE=${RATE:-10000}
PIN=${PIN:-0}
# ONLY: the names of the proxies to measure, comma-separated (empty: all).
ONLY=${ONLY:-}
WORK=$(mktemp -d /tmp/e2e.XXXXXX)
BACKENDS=(127.0.0.1:19001 127.0.0.1:19002 127.0.0.1:19003)
# shellcheck source=benches/e2e/common.sh
. benches/e2e/common.sh
install_missing nginx haproxy wrk python3
export PATH="$HOME/.cargo/bin:$PATH"
if ! need oha; then
  cargo install oha --locked >/dev/null 2>&1 || echo "note: oha could not be installed; open-loop runs skipped"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

build_bench_proxy

# With PIN=1: PROXY_CPU runs the one-worker proxies, LOAD runs the backends and the load
# generators (empty: anywhere).
PROXY_CPU=()
LOAD=()
if [ "$PIN" = 1 ]; then
  need taskset || { echo "PIN=1 needs taskset (util-linux)" >&2; exit 2; }
  cpus=$(nproc)
  [ "$cpus" -ge 2 ] || { echo "PIN=1 needs two CPUs or more" >&2; exit 2; }
  PROXY_CPU=(taskset -c 0)
  LOAD=(taskset -c "1-$((cpus - 1))")
fi
# pinned WORKERS: the command prefix that places a proxy with WORKERS workers.
pinned() { if [ "$1" = 1 ]; then echo "${PROXY_CPU[@]}"; fi; }
# wanted NAME: whether ONLY lets NAME be measured.
wanted() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

"${LOAD[@]}" "$BIN" backends "${BACKENDS[@]}" &
PIDS+=($!)

tower() { # name port workers client stack [--per-core]
  wanted "$1" || return 0
  local args=("${@:6}")
  for b in "${BACKENDS[@]}"; do args+=(--backend "$b"); done
  $(pinned "$3") "$BIN" proxy --listen "127.0.0.1:$2" --workers "$3" --client "$4" --stack "$5" "${args[@]}" &
  PIDS+=($!)
  echo "$1 $2 $! $3" >>"$WORK/proxies"
}

floor() { # name port [floor|codec-floor]
  wanted "$1" || return 0
  local args=()
  for b in "${BACKENDS[@]}"; do args+=(--backend "$b"); done
  $(pinned 1) "$BIN" "${3:-floor}" --listen "127.0.0.1:$2" --workers 1 "${args[@]}" &
  PIDS+=($!)
  echo "$1 $2 $! 1" >>"$WORK/proxies"
}

nginx_conf() { # workers port
  wanted "nginx-$1" || return 0
  nginx_cfg "$1" "$2" "$WORK/nginx-$1"
  $(pinned "$1") "$NGINX" -c "$WORK/nginx-$1/nginx.conf" -p "$WORK/nginx-$1" &
  PIDS+=($!)
  echo "nginx-$1 $2 $! $1" >>"$WORK/proxies"
}

haproxy_conf() { # threads port
  wanted "haproxy-$1" || return 0
  haproxy_cfg "$1" "$2" "$WORK/haproxy-$1.cfg"
  $(pinned "$1") "$HAPROXY" -f "$WORK/haproxy-$1.cfg" -db &
  PIDS+=($!)
  echo "haproxy-$1 $2 $! $1" >>"$WORK/proxies"
}

# The order of a round: each proxy next to the peers it is compared with, so that the ratios
# of one round compare runs a few seconds apart (the machine drifts over minutes).
tower towerlb-1 18001 1 target bare
haproxy_conf 1 18021
nginx_conf 1 18011
tower towerlb-full-1 18003 1 target full
floor hyper-floor-1 18031
floor codec-floor-1 18032 codec-floor
tower towerlb-legacy-1 18004 1 legacy bare
if [ "$PIN" != 1 ]; then
  tower towerlb-2 18002 2 target bare
  haproxy_conf 2 18022
  nginx_conf 2 18012
  tower towerlb-2pc 18005 2 target bare --per-core
fi
[ -s "$WORK/proxies" ] || { echo "ONLY=$ONLY names no proxy of this run" >&2; exit 2; }
sleep 1

cat >"$WORK/pct.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("E2E %d %.3f %d %d %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
EOF

# CPU ticks of a process and all its descendants.
ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    if [ -r "/proc/$p/stat" ]; then
      total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    fi
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)
# Busy and all ticks of the whole machine (every CPU): user, nice, system, irq and softirq are
# busy; idle, iowait and steal are not.
machine() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

echo "machine: $(nproc) CPUs, PIN=$PIN, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  # Every other round runs the list backwards: neighbours stay neighbours, and no proxy always
  # runs before the peer it is compared with.
  if [ $((round % 2)) -eq 1 ]; then cp "$WORK/proxies" "$WORK/order"; else tac "$WORK/proxies" >"$WORK/order"; fi
  while read -r name port pid workers; do
    url="http://127.0.0.1:$port/"
    curl -sf -o /dev/null "$url" || { echo "$name does not answer"; exit 1; }
    "${LOAD[@]}" wrk -t1 -c64 -d1s "$url" >/dev/null
    t0=$(ticks "$pid")
    read -r m0 a0 < <(machine)
    line=$("${LOAD[@]}" wrk -t1 -c64 -d"${DURATION}s" -s "$WORK/pct.lua" "$url" | grep '^E2E')
    read -r m1 a1 < <(machine)
    t1=$(ticks "$pid")
    read -r _ reqs rps p50 p99 p999 <<<"$line"
    cpu=$(python3 -c "print(f'{($t1 - $t0) / $HZ * 1e6 / max($reqs, 1):.2f}')")
    busy=$(python3 -c "print(f'{($t1 - $t0) / $HZ / $DURATION:.2f}')")
    # The whole machine's busy share, and what everything but the proxy (wrk, the backends,
    # the rest of the system) spent per request.
    whole=$(python3 -c "print(f'{($m1 - $m0) / max($a1 - $a0, 1):.2f}')")
    load=$(python3 -c "print(f'{max($m1 - $m0 - ($t1 - $t0), 0) / $HZ * 1e6 / max($reqs, 1):.2f}')")
    open="- - -"
    if need oha; then
      open=$("${LOAD[@]}" oha -z "${DURATION}s" -q "$RATE" -c 64 --latency-correction --no-tui \
        --output-format json "$url" | python3 -c '
import json, sys
p = json.load(sys.stdin)["latencyPercentiles"]
us = lambda k: "%.0f" % ((p.get(k) or 0) * 1e6)
print(us("p50"), us("p99"), us("p99.9"))')
    fi
    echo "$round $name $workers $rps $p50 $p99 $p999 $cpu $open $busy $whole $load" | tee -a "$WORK/results"
  done <"$WORK/order"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$WORK/results" "$RATE" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r[1], []).append(r)
def med(name, i):
    vals = [float(r[i]) for r in by[name] if r[i] != "-"]
    return statistics.median(vals) if vals else float("nan")
cols = [("req/s", 3), ("p50 us", 4), ("p99 us", 5), ("p99.9 us", 6), ("CPU us/req", 7),
        (f"open p50", 8), ("open p99", 9), ("open p99.9", 10), ("busy", 11),
        ("machine busy", 12), ("load CPU us/req", 13)]
print(f"\nmedians over {len(set(r[0] for r in rows))} rounds (wrk -t1 -c64 closed loop; open loop: oha -q {sys.argv[2]} -c64 --latency-correction)")
print("| proxy | " + " | ".join(c for c, _ in cols) + " |")
print("|---|" + "---:|" * len(cols))
for name in by:
    print(f"| {name} | " + " | ".join(f"{med(name, i):.2f}" if i in (7, 11, 12, 13) else f"{med(name, i):.0f}" for _, i in cols) + " |")
print("\nratios (tower-lb / peer at the same worker count; req/s: higher is better, the rest: lower is better)")
print("| tower-lb | peer | req/s | CPU/req | p99 | p99.9 | open p99 | open p99.9 |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for ours, w in [("towerlb-1", "1"), ("towerlb-full-1", "1"), ("towerlb-legacy-1", "1"), ("towerlb-2", "2"), ("towerlb-2pc", "2")]:
    for peer in (f"nginx-{w}", f"haproxy-{w}"):
        if ours in by and peer in by:
            r = lambda i: med(ours, i) / med(peer, i)
            print(f"| {ours} | {peer} | {r(3):.2f}x | {r(7):.2f}x | {r(5):.2f}x | {r(6):.2f}x | {r(9):.2f}x | {r(10):.2f}x |")
print("\npaired ratios: the median over rounds of (tower-lb / peer in the same round), which the")
print("machine's drift between rounds moves less than the ratio of medians above")
print("| tower-lb | peer | req/s | CPU/req | p99 | p99.9 | open p99 | open p99.9 |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
def paired(ours, peer, i):
    a = {r[0]: r[i] for r in by[ours]}
    b = {r[0]: r[i] for r in by[peer]}
    vals = [float(a[k]) / float(b[k]) for k in a
            if k in b and "-" not in (a[k], b[k]) and float(b[k]) > 0]
    return statistics.median(vals) if vals else float("nan")
for ours, w in [("towerlb-1", "1"), ("towerlb-full-1", "1"), ("towerlb-2", "2"), ("towerlb-2pc", "2")]:
    for peer in (f"nginx-{w}", f"haproxy-{w}"):
        if ours in by and peer in by:
            r = lambda i: paired(ours, peer, i)
            print(f"| {ours} | {peer} | {r(3):.2f}x | {r(7):.2f}x | {r(5):.2f}x | {r(6):.2f}x | {r(9):.2f}x | {r(10):.2f}x |")
print("\nfloor ratios (tower-lb / hyper-floor-1: what tower-lb adds over a bare hyper proxy;")
print("hyper-floor-1 / peer: what hyper itself costs; codec-floor-1 / peer: what a proxy on tokio")
print("with its own HTTP/1 codec costs; req/s: higher is better, the rest: lower is better)")
print("| proxy | against | req/s | CPU/req | p99 | p99.9 | open p99 | open p99.9 |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
floor = "hyper-floor-1"
for ours, peer in [("towerlb-1", floor), ("towerlb-full-1", floor), ("towerlb-legacy-1", floor),
                   (floor, "nginx-1"), (floor, "haproxy-1"),
                   ("codec-floor-1", "nginx-1"), ("codec-floor-1", "haproxy-1"), ("codec-floor-1", floor)]:
    if ours in by and peer in by:
        r = lambda i: med(ours, i) / med(peer, i)
        print(f"| {ours} | {peer} | {r(3):.2f}x | {r(7):.2f}x | {r(5):.2f}x | {r(6):.2f}x | {r(9):.2f}x | {r(10):.2f}x |")
EOF
