#!/usr/bin/env bash
# A quick, second method beside run.sh: CPU per request split into user and system time, req/s,
# and how often the backends slept per request, for a few proxies started afresh for every
# measurement and interleaved over ROUNDS rounds (closed loop `wrk -t1 -c64` only).
#
#   benches/e2e/interleave.sh [ROUNDS] [SECONDS] NAME=MODE[:ARGS]...
#   benches/e2e/interleave.sh 8 5 tlb=proxy floor=floor haproxy=haproxy full=proxy:--stack:full
#
# MODE is an `e2e_proxy` mode (`proxy`, `floor`, `codec-floor`) with its arguments joined by
# `:`, or `haproxy` (one thread, `http-reuse always`, `option forwardfor`, as in run.sh); a
# MODE that starts with an absolute path runs that `e2e_proxy` binary instead of this checkout's
# (`old=/tmp/e2e_proxy.old:proxy` compares two builds). Prints
# the medians over the rounds. Backends on ports 19201-19203, proxies on 18401 and up. Installs
# haproxy and wrk with apt-get when missing. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
SECS=${2:-5}
shift 2
[ $# -ge 1 ] || { echo "usage: $0 ROUNDS SECONDS NAME=MODE[:ARGS]..." >&2; exit 2; }
WORK=$(mktemp -d /tmp/interleave.XXXXXX)
BACKENDS=(127.0.0.1:19201 127.0.0.1:19202 127.0.0.1:19203)
# shellcheck source=benches/e2e/common.sh
. benches/e2e/common.sh
install_missing haproxy wrk python3
build_bench_proxy
"$BIN" backends "${BACKENDS[@]}" &
BPID=$!
PIDS+=($BPID)
HZ=$(getconf CLK_TCK)
sleep 0.5
for r in $(seq "$ROUNDS"); do
  port=18401
  for spec in "$@"; do
    name=${spec%%=*}
    mode=${spec#*=}
    if [ "$mode" = haproxy ]; then
      haproxy_cfg 1 "$port" "$WORK/h-$port.cfg"
      haproxy -f "$WORK/h-$port.cfg" -db &
    else
      start_bench_proxy "$mode" "$port"
    fi
    pid=$!
    PIDS+=($pid)
    sleep 0.5
    wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    w0=$(awk '/^voluntary/{print $2}' "/proc/$BPID/status")
    out=$(wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$port/")
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
    w1=$(awk '/^voluntary/{print $2}' "/proc/$BPID/status")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    reqs=$(awk '/requests in/{print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    python3 -c "
r, hz = $reqs, $HZ
print('$r', '$name', '$rps', ($u1 - $u0) / hz * 1e6 / r, ($s1 - $s0) / hz * 1e6 / r, ($w1 - $w0) / r)" \
      | tee -a "$WORK/results"
    port=$((port + 1))
  done
done
python3 - "$WORK/results" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    _, name, *v = line.split()
    rows[name].append([float(x) for x in v])
print(f"{'':14s} {'req/s':>8s} {'user':>6s} {'sys':>6s} {'CPU/req':>8s} {'backend sleeps/req':>19s}")
for name, v in rows.items():
    med = lambda i: statistics.median(x[i] for x in v)
    total = statistics.median(x[1] + x[2] for x in v)
    print(f"{name:14s} {med(0):8.0f} {med(1):6.2f} {med(2):6.2f} {total:8.2f} {med(3):19.3f}")
EOF
