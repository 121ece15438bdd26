#!/usr/bin/env bash
# Installs what is missing, then runs restream with its embedded defaults and its own Pushpin:
# clients connect to ws://127.0.0.1:7999/ws. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The embedded defaults need none of the AWS adapters: building without them (and without
# optimisations) brings a fresh machine up in minutes. RESTREAM_DEV_PROFILE=release builds
# optimised; `cargo build --release -p restream` is the full binary (see docs/deploy.md).
profile=()
[[ "${RESTREAM_DEV_PROFILE:-dev}" == release ]] && profile=(--release)
exec cargo run "${profile[@]}" --locked --no-default-features -p restream -- dev "$@"
