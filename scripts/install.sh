#!/usr/bin/env bash
# Installs everything Warden needs on a fresh Debian machine: system packages (bubblewrap
# for the compile jail) and the Python package with its dependencies.
# Usage: scripts/install.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
if ((${#need_apt[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1 || {
        $SUDO apt-get update -q >/dev/null
        $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null
    }
fi

extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
python3 -m pip install -q --disable-pip-version-check -e ".${extras}"
