#!/usr/bin/env bash
# Installs what restream needs on Debian/Ubuntu, only what is missing:
# Pushpin (with condure and zurl), libzmq headers and pkg-config for the zmq crate, Python 3.
set -euo pipefail

need=()
command -v pushpin >/dev/null 2>&1 || need+=(pushpin)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists libzmq 2>/dev/null || need+=(libzmq3-dev)
command -v python3 >/dev/null 2>&1 || need+=(python3)

if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust from https://rustup.rs" >&2
  exit 1
fi
