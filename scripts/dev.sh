#!/usr/bin/env bash
# Installs what is missing, then runs restream with its embedded defaults and its own Pushpin:
# clients connect to ws://127.0.0.1:7999/ws. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec cargo run --release -p restream -- dev "$@"
