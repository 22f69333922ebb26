#!/usr/bin/env bash
# Installs everything Warden needs on a fresh Debian machine: system packages (bubblewrap
# for the compile jail; Debian's rustc with its wasm32-wasi std for Rust; npm, which fetches
# the pinned Ruby runtime from the npm registry), the Python package
# with its dependencies, then builds the language toolchains once (`warden warm`).
# Usage: scripts/install.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
[ -x /usr/bin/rustc ] || need_apt+=(rustc)
[ -d /usr/lib/rustlib/wasm32-wasi ] || need_apt+=(libstd-rust-dev-wasm32)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# Test-only tools (--dev): promtool lints /metrics; Debian's Chromium runs the browser test
# (Playwright cannot download browsers here).
if [ "${1:-}" = "--dev" ]; then
    command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
    [ -x /usr/bin/chromium ] || need_apt+=(chromium)
fi
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

# zig's libc/libc++ sysroot, the QuickJS module, the CPython artifact and the Ruby module
# (npm pack of @ruby/3.4-wasm-wasi, rewritten into a WASI command): minutes once, then
# nothing (each step is skipped when already built).
python3 -m service.cli warm
