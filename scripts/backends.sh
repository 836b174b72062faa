#!/usr/bin/env bash
# The scale-out backends the tests run against, each a real server on loopback with its
# data in a throwaway directory: PostgreSQL (Debian's, a cluster made by initdb), an
# S3-compatible server (s3s-fs) and Azure Blob Storage's emulator (Azurite).
#
#   scripts/backends.sh start DIR [postgres] [s3] [azure]  # start them (all by default);
#                                        # writes DIR/env (source it) and DIR/*.pid
#   scripts/backends.sh stop DIR                  # stop them by PID and delete DIR
#   scripts/backends.sh pause DIR postgres|s3|azure   # stop one, keeping its data and port
#   scripts/backends.sh resume DIR postgres|s3|azure  # start it again: same port, same data
#
# DIR must be reachable by the `postgres` user when run as root (under /tmp, not /root).
# Needs: postgresql (apt), $TOOLS/s3s/bin/s3s-fs, $TOOLS/azurite (npm), $VENV with
# azure-storage-blob (scripts/test.sh installs them). S3S_FS=/path/to/s3s-fs runs another
# build of it (a benchmark's what-if; the tests use the one from crates.io).
set -euo pipefail

usage="usage: backends.sh start|stop|pause|resume DIR [postgres] [s3] [azure]"
cmd=${1:?$usage}
dir=${2:?$usage}
shift 2
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(postgres s3 azure)
wants() { [[ " ${want[*]} " == *" $1 "* ]]; }

cache=${XDG_CACHE_HOME:-$HOME/.cache}/wharf
TOOLS=${TOOLS:-$cache/tools}
VENV=${VENV:-$cache/venv}
# Azurite's well-known development account (public; the emulator accepts nothing else).
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "backends.sh: $what did not start" >&2
  return 1
}

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] || { echo "backends.sh: PostgreSQL is not installed" >&2; return 1; }
  echo "$bin"
}

# PostgreSQL refuses to run as root: run it as the `postgres` user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() { # port
  # fsync off: a throwaway cluster; durability is PostgreSQL's to test, not ours.
  as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w \
    -o "-h 127.0.0.1 -p $1 -k $dir/pg -c fsync=off -c max_connections=300" start >/dev/null
  as_pg cat "$dir/pg/data/postmaster.pid" | head -1 >"$dir/postgres.pid"
  echo "$1" >"$dir/postgres.port"
}

start_s3() { # port
  setsid "${S3S_FS:-$TOOLS/s3s/bin/s3s-fs}" --host 127.0.0.1 --port "$1" \
    --access-key wharf-test --secret-key wharf-test-secret "$dir/s3" >>"$dir/s3.log" 2>&1 &
  echo $! >"$dir/s3s.pid"
  echo "$1" >"$dir/s3.port"
  wait_for s3s-fs curl -s -o /dev/null "http://127.0.0.1:$1/"
}

start_azure() { # port
  setsid "$TOOLS/azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$1" \
    --location "$dir/azurite" --silent --skipApiVersionCheck --disableTelemetry \
    >>"$dir/azurite.log" 2>&1 &
  echo $! >"$dir/azurite.pid"
  echo "$1" >"$dir/azure.port"
  wait_for Azurite curl -s -o /dev/null "http://127.0.0.1:$1/"
}

start() {
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # PostgreSQL runs as its own user: it must reach its directory (mktemp -d makes 0700).
  chmod 755 "$dir"
  : >"$dir/env"
  if wants postgres; then
    mkdir -p "$dir/pg"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pg"; fi
    as_pg "$(pg_bin)/initdb" -D "$dir/pg/data" -A trust -U wharf >"$dir/pg/initdb.log"
    local pg_port
    pg_port=$(free_port)
    start_postgres "$pg_port"
    echo "export WHARF_TEST_POSTGRES='postgres://wharf@127.0.0.1:$pg_port/postgres'" >>"$dir/env"
  fi
  if wants s3; then
    mkdir -p "$dir/s3/wharf"
    local s3_port
    s3_port=$(free_port)
    start_s3 "$s3_port"
    {
      echo "export WHARF_TEST_S3='s3://wharf?endpoint=http://127.0.0.1:$s3_port&region=us-east-1&allow_http=true'"
      echo "export AWS_ACCESS_KEY_ID=wharf-test"
      echo "export AWS_SECRET_ACCESS_KEY=wharf-test-secret"
    } >>"$dir/env"
  fi
  if wants azure; then
    mkdir -p "$dir/azurite"
    local az_port
    az_port=$(free_port)
    start_azure "$az_port"
    "$VENV/bin/python" - "$az_port" "$AZ_ACCOUNT" "$AZ_KEY" <<'PY'
import sys
from azure.storage.blob import BlobServiceClient
port, account, key = sys.argv[1:4]
conn = (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{account};")
BlobServiceClient.from_connection_string(conn).create_container("wharf")
PY
    {
      echo "export WHARF_TEST_AZURE='az://$AZ_ACCOUNT/wharf?endpoint=http://127.0.0.1:$az_port/$AZ_ACCOUNT&allow_http=true'"
      echo "export AZURE_STORAGE_ACCOUNT_NAME=$AZ_ACCOUNT"
      echo "export AZURE_STORAGE_ACCOUNT_KEY='$AZ_KEY'"
    } >>"$dir/env"
  fi
}

pause() {
  case ${want[0]} in
    postgres) as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m immediate stop >/dev/null ;;
    s3 | azure)
      local pid
      pid=$(cat "$dir/$([ "${want[0]}" = s3 ] && echo s3s || echo azurite).pid")
      kill "$pid"
      while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
      ;;
    *) echo "backends.sh: pause postgres|s3|azure" >&2; exit 2 ;;
  esac
}

resume() {
  case ${want[0]} in
    postgres) start_postgres "$(cat "$dir/postgres.port")" ;;
    s3) start_s3 "$(cat "$dir/s3.port")" ;;
    azure) start_azure "$(cat "$dir/azure.port")" ;;
    *) echo "backends.sh: resume postgres|s3|azure" >&2; exit 2 ;;
  esac
}

stop() {
  [ -d "$dir" ] || return 0
  for name in s3s azurite; do
    if [ -f "$dir/$name.pid" ]; then
      kill -- "-$(cat "$dir/$name.pid")" 2>/dev/null || kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
    fi
  done
  if [ -f "$dir/pg/data/postmaster.pid" ]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m immediate stop >/dev/null 2>&1 ||
      kill "$(cat "$dir/postgres.pid")" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  pause) pause ;;
  resume) resume ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
