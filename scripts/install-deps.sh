#!/usr/bin/env bash
# Installs what restream needs on Debian/Ubuntu, only what is missing:
# Pushpin (with condure and zurl), libzmq headers and pkg-config for the zmq crate, Python 3,
# and a virtualenv (.venv) with the fetcher test tools (pytest, jsonschema), the local AWS
# stand-ins the tests start themselves (moto for DynamoDB and S3; awslambdaric, the AWS Lambda
# Python runtime client driven by scripts/minilambda.py) and the offline infrastructure checks
# (python-hcl2 parses terraform, checkov scans it). With `--tests`, also docker-compose (v1),
# used only to validate docker-compose.yml; no container engine is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v pushpin >/dev/null 2>&1 || need+=(pushpin)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists libzmq 2>/dev/null || need+=(libzmq3-dev)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
if [ "${1:-}" = "--tests" ]; then
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
fi

if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY_PACKAGES=(pytest jsonschema 'moto[server]==5.2.5' 'awslambdaric==4.2.2' 'python-hcl2==8.1.4' 'checkov==3.3.30')
if ! .venv/bin/python -c "import pytest, jsonschema, moto, awslambdaric, hcl2, checkov" >/dev/null 2>&1; then
  echo "installing into .venv: ${PY_PACKAGES[*]}"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust from https://rustup.rs" >&2
  exit 1
fi
