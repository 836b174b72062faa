#!/usr/bin/env bash
# What the metadata stores cost as a registry grows: SQLite and PostgreSQL side by side, at
# 10 000 repositories holding 10 k, 100 k and 1 M manifests (each tagged). Prints, for each
# size, push / tag move / tag-list page / catalog page (median and best, with the ratio to
# the empty store) and the time of a GC pass after deleting --ops manifests.
#
#   bench/growth.sh [--steps 10000,100000,1000000] [--ops 200]
#
# The work is crates/storage/benches/growth.rs; this starts a throwaway PostgreSQL for it
# (scripts/backends.sh, under /tmp) and stops it after.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${XDG_CACHE_HOME:-$HOME/.cache}/wharf
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
BACKENDS=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench-growth.XXXXXX")
scripts/backends.sh start "$BACKENDS" postgres
trap 'scripts/backends.sh stop "$BACKENDS"' EXIT
# shellcheck disable=SC1091
. "$BACKENDS/env"
export WHARF_TEST_POSTGRES
cargo bench -p wharf-storage --bench growth -- "$@"
