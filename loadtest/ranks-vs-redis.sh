#!/usr/bin/env bash
# The leaderboard ranking at 1,000,000 participants beside Redis on this machine, in one run.
# Installs redis-server from Debian when it is missing; if that is not possible, the Redis
# rows are skipped with a message and the Kudos rows are still measured.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (Debian package)..." >&2
    { apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }; } >/dev/null 2>&1 \
      || echo "could not install redis-server; Redis rows will be skipped" >&2
  else
    echo "no apt-get; Redis rows will be skipped" >&2
  fi
fi
cargo build --release -p kudos-loadtest
exec target/release/kudos-loadtest ranks --participants "${PARTICIPANTS:-1000000}" --ops "${OPS:-200000}" --redis
