#!/usr/bin/env bash
# Install everything the tests need, then run them. Works on a fresh Debian machine as root
# (or with sudo): the tests start their own Redis and PostgreSQL servers on free loopback
# ports in temporary folders, so both servers' binaries must be installed, and Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
apt_install() {
    [ -n "$apt_updated" ] || { sudo_if_needed apt-get update -qq; apt_updated=1; }
    sudo_if_needed apt-get install -y -qq "$@" >/dev/null
}

command -v redis-server >/dev/null || apt_install redis-server
# The load balancer of deploy/compose.yaml, started by tests/deploy from deploy/nginx.conf.
# Debian's package would start its own nginx on port 80: policy-rc.d says no while it installs.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    if [ -e /usr/sbin/policy-rc.d ]; then
        apt_install nginx
    else
        printf '#!/bin/sh\nexit 101\n' | sudo_if_needed tee /usr/sbin/policy-rc.d >/dev/null
        sudo_if_needed chmod +x /usr/sbin/policy-rc.d
        apt_install nginx || { sudo_if_needed rm -f /usr/sbin/policy-rc.d; exit 1; }
        sudo_if_needed rm -f /usr/sbin/policy-rc.d
    fi
fi
# The console's browser tests drive Debian's Chromium (Playwright's own browser download is
# not used: the Python package talks to /usr/bin/chromium).
[ -x /usr/bin/chromium ] || apt_install chromium
if ! command -v initdb >/dev/null; then
    # Debian keeps PostgreSQL's server binaries off the PATH.
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
    PATH="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)"):$PATH"
    export PATH
fi

python3 -m pip install -q -e '.[test]'
python3 -m pytest "$@"
