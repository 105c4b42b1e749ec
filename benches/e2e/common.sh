# Shared by the end-to-end scripts (sourced, not run): tool checks, the bench proxy's build,
# process cleanup and HAProxy's configuration. Expects WORK (a scratch directory) and
# BACKENDS (the backends' addresses) to be set by the script that sources it.

need() { command -v "$1" >/dev/null 2>&1; }
sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# install_missing PACKAGE...: installs with apt-get the packages whose command is missing.
install_missing() {
  local p missing=()
  for p in "$@"; do need "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  sudo_if apt-get update -qq
  sudo_if apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Builds `benches/e2e/proxy.rs` and sets BIN to it: with the `release-lto` profile (Cargo.toml),
# as a proxy binary is built for production, or with the one PROFILE names (`PROFILE=release`:
# the default release profile).
build_bench_proxy() {
  local profile=${PROFILE:-release-lto}
  cargo build --profile "$profile" --quiet --features server,governor --example e2e_proxy
  BIN=target/$profile/examples/e2e_proxy
}

# start_bench_proxy MODE PORT: starts `e2e_proxy` in the background (`$!` is its pid) for MODE,
# its mode and arguments joined by `:`, listening on PORT and forwarding to BACKENDS; a MODE
# that starts with an absolute path runs that binary instead of BIN.
start_bench_proxy() {
  local bin=$BIN args b
  IFS=: read -r -a args <<<"$1"
  if [[ ${args[0]} == /* ]]; then
    bin=${args[0]}
    args=("${args[@]:1}")
  fi
  for b in "${BACKENDS[@]}"; do args+=(--backend "$b"); done
  "$bin" "${args[@]}" --listen "127.0.0.1:$2" &
}

# Every process started is added to PIDS; they are stopped and WORK removed on exit.
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# haproxy_cfg THREADS PORT FILE: HAProxy as measured here (`http-reuse always`,
# `option forwardfor`), round robin over BACKENDS.
haproxy_cfg() {
  local i=0 servers=""
  for b in "${BACKENDS[@]}"; do i=$((i + 1)); servers+="  server s$i $b"$'\n'; done
  cat >"$3" <<CFG
global
  nbthread $1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:$2
  default_backend b
backend b
  balance roundrobin
$servers
CFG
}

# nginx_cfg WORKERS PORT DIR: nginx as measured here (keepalive upstream of 64 connections,
# X-Forwarded-For), round robin over BACKENDS, in the foreground, its files in DIR (written to
# DIR/nginx.conf).
nginx_cfg() {
  local servers="" b
  for b in "${BACKENDS[@]}"; do servers+="server $b;"; done
  mkdir -p "$3"
  cat >"$3/nginx.conf" <<EOF
worker_processes $1;
daemon off;
pid $3/nginx.pid;
error_log $3/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $3;
  proxy_temp_path $3;
  fastcgi_temp_path $3;
  uwsgi_temp_path $3;
  scgi_temp_path $3;
  upstream backends { $servers keepalive 64; }
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
EOF
}
