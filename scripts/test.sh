#!/usr/bin/env bash
# Installs Warden with its dev extras and runs the whole test suite (real wasmtime,
# real Redis started by the tests on a free port). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
# Two processes, a whole test module each at a time (a module's cluster fixture starts
# once): on 2 cores the suite takes about 12 minutes instead of 21.
python3 -m pytest -n 2 --dist loadfile "$@"
