#!/usr/bin/env bash
# Installs what the peer benchmarks need to build pingora-load-balancing (cmake and a C
# toolchain for its native dependencies). Debian/Ubuntu; run as root (or with sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends cmake build-essential pkg-config perl clang
