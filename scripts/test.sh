#!/usr/bin/env bash
# Installs what is missing, then runs the whole test suite: the Rust unit, property and
# end-to-end tests (real Pushpin, real WebSocket clients, real fetcher processes) and the
# fetchers' own tests against recorded upstream responses, and the offline checks of the
# deployment files (terraform, Dockerfiles, docker-compose.yml, Apex project), and a smoke run of
# every benchmark scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --tests
cargo test --workspace --locked -- --test-threads="${RESTREAM_TEST_THREADS:-2}"
# Every benchmark scenario, small (bench/README.md): completes, one upstream call per poll.
cargo build --locked -q -p restream --bin restream
cargo run --locked -q -p restream-bench -- smoke
.venv/bin/python -m pytest functions -q
.venv/bin/python -m pytest infrastructure -q
