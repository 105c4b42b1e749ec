#!/usr/bin/env bash
# Where a proxy's CPU goes per request: `perf record` (software cpu-clock, so it works in VMs
# without hardware counters) on one proxy process under `wrk -t1 -c64`, then CPU per request
# split into kernel and user space, and user space by crate / library.
#
#   benches/e2e/profile.sh PID PORT [SECONDS]
#
# Needs perf (`apt-get install -y linux-perf`) and wrk; run.sh installs both.
set -euo pipefail
pid=$1 port=$2 secs=${3:-5}
data=$(mktemp /tmp/e2e-perf.XXXXXX)
wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null
perf record -q -e cpu-clock -F 2000 -p "$pid" -o "$data" -- sleep "$secs" 2>/dev/null &
rec=$!
reqs=$(wrk -t1 -c64 -d"${secs}s" "http://127.0.0.1:$port/" | awk '/requests in/{print $1}')
wait $rec
perf report -i "$data" --no-children --sort dso,sym -F overhead,sample,dso,sym --stdio 2>/dev/null \
  | python3 -c '
import sys, re, collections
secs, reqs, hz = float(sys.argv[1]), int(sys.argv[2]), 2000.0
groups = collections.Counter(); total = 0
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\d+)\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if not m: continue
    n, dso, kind, sym = int(m.group(2)), m.group(3), m.group(4), m.group(5)
    total += n
    if kind == "k": g = "kernel"
    elif "memmove" in sym or "memcpy" in sym or "memset" in sym: g = "memcpy"
    elif re.search(r"malloc|free|realloc|cfree", sym): g = "malloc/free"
    elif "libc" in dso or "vdso" in dso: g = "libc (syscall stubs, clock)"
    else:
        m2 = re.match(r"[<(]*(?:impl )?([a-z_0-9]+)::", sym)
        g = m2.group(1).replace("_", "-") if m2 else "other"
    groups[g] += n
us = lambda n: n / hz / reqs * 1e6
k = groups["kernel"]
print(f"requests {reqs}, CPU per request {us(total):.2f} us (kernel {us(k):.2f}, user {us(total - k):.2f})")
for g, n in groups.most_common(14):
    print(f"  {g:<32} {us(n):6.2f} us")
' "$secs" "$reqs"
rm -f "$data"
