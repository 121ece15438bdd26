#!/usr/bin/env bash
# Installs what restream needs on Debian/Ubuntu, only what is missing:
# Pushpin (with condure and zurl), libzmq headers and pkg-config for the zmq crate, Python 3,
# and a virtualenv (.venv) with the fetcher test tools (pytest, jsonschema) and the local AWS
# stand-ins the tests start themselves: moto (DynamoDB, S3) and awslambdaric (the AWS Lambda
# Python runtime client, driven by scripts/minilambda.py).
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

if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY_PACKAGES=(pytest jsonschema 'moto[server]==5.2.5' 'awslambdaric==4.2.2')
if ! .venv/bin/python -c "import pytest, jsonschema, moto, awslambdaric" >/dev/null 2>&1; then
  echo "installing into .venv: ${PY_PACKAGES[*]}"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust from https://rustup.rs" >&2
  exit 1
fi
