#!/usr/bin/env bash
# Installs what is missing, then runs the whole test suite: unit, property and end-to-end tests
# (real Pushpin, real WebSocket clients, real fetcher processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo test --workspace --locked -- --test-threads="${RESTREAM_TEST_THREADS:-2}"
