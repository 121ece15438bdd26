#!/usr/bin/env bash
# Installs what is missing, then runs the whole test suite: the Rust unit, property and
# end-to-end tests (real Pushpin, real WebSocket clients, real fetcher processes) and the
# fetchers' own tests against recorded upstream responses, and the offline checks of the
# deployment files (terraform, Dockerfiles, docker-compose.yml, Apex project), and a smoke run of
# every benchmark scenario.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --tests
# Includes bench/tests/smoke.rs: every benchmark scenario, small (bench/README.md), with one
# upstream call per poll. One `cargo test --workspace` builds everything with one feature set;
# a separate `cargo build -p ...` would build the whole dependency tree a second time.
cargo test --workspace --locked -- --test-threads="${RESTREAM_TEST_THREADS:-2}"
.venv/bin/python -m pytest functions -q
.venv/bin/python -m pytest infrastructure -q
# The JavaScript client's unit tests (seq rule, patches, backoff) under node's test runner; its
# real-browser tests and the Python client's tests run in the e2e suite above (client_js,
# client_python).
node --test clients/js/test/
# Channel files against schemas/channel.schema.json (restream fetchers check runs in
# backend/tests/declarative/check.rs, part of cargo test above).
.venv/bin/python -m pytest channels -q
