#!/usr/bin/env bash
# Installs Debian's chromium for the admin page's browser test (tests/admin), if it is missing.
# Fast when it is there already. Never fails CI: without chromium the test prints why and skips.
set -uo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium: $(command -v chromium) ($(chromium --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: not installed and no apt-get here; the browser test will skip"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "chromium: not installed and not root; the browser test will skip"
        exit 0
    fi
fi
echo "chromium: installing Debian's package"
export DEBIAN_FRONTEND=noninteractive
if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    echo "chromium: installed $(chromium --version 2>/dev/null)"
else
    echo "chromium: installation failed; the browser test will skip"
fi
exit 0
