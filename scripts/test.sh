#!/usr/bin/env bash
# Installs Warden with its dev extras and runs the whole test suite (real wasmtime,
# real Redis started by the tests on a free port). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
python3 -m pytest "$@"
