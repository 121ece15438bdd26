#!/usr/bin/env bash
# Installs what restream needs on Debian/Ubuntu, only what is missing.
#
# To run: Pushpin (with condure and zurl), libzmq headers and pkg-config for the zmq crate,
# and Python 3 for the process fetchers.
#
# With `--tests`, also what the test suite uses:
# - a virtualenv (.venv) with the fetcher test tools (pytest, jsonschema), the local AWS
#   stand-ins the tests start themselves (moto for DynamoDB and S3; awslambdaric, the AWS
#   Lambda Python runtime client driven by scripts/minilambda.py) and the offline
#   infrastructure checks (python-hcl2 parses terraform, checkov scans it) and the deploy
#   drill's WebSocket clients (aiohttp) and the Python client library's dependency (websockets);
# - `requests` (from PyPI) into the site-packages of backend/tests/fixtures/original/*;
# - docker-compose (v1), only to validate docker-compose.yml (no container engine is needed);
# - Chromium and playwright-core (npm, tests/browser) for the demo page's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=false
[ "${1:-}" = "--tests" ] && tests=true

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v pushpin >/dev/null 2>&1 || need+=(pushpin)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists libzmq 2>/dev/null || need+=(libzmq3-dev)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if $tests; then
  python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  command -v jq >/dev/null 2>&1 || need+=(jq)  # scripts/apex-project.sh (tested)
fi

if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if $tests; then
  PY_PACKAGES=(pytest jsonschema 'moto[server]==5.2.5' 'awslambdaric==4.2.2' 'python-hcl2==8.1.4' 'checkov==3.3.30'
               'aiohttp==3.14.5' 'websockets==17.4')
  if ! .venv/bin/python -c "import pytest, jsonschema, moto, awslambdaric, hcl2, checkov, aiohttp, websockets" >/dev/null 2>&1; then
    echo "installing into .venv: ${PY_PACKAGES[*]}"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  fi
  # Fetchers in the original restream's shape (requirements.txt -> site-packages, `requests`),
  # for backend/tests/e2e/original_fetchers.rs; a no-op when already installed (hash-keyed).
  .venv/bin/python scripts/fetcher_deps.py backend/tests/fixtures/original
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "installing tests/browser (playwright-core; the browser is the system chromium)"
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust from https://rustup.rs" >&2
  exit 1
fi
