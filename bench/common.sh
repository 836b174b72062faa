# Shared by the benchmark scripts (sourced, not run): options, paths, the release build,
# and small helpers. Sets SIZE, RUNS, TOOLS_DIR, CARGO_TARGET_DIR, WHARF, WORK (from $1).
set -euo pipefail
# A failed step (curl -f answers 22) says where, instead of ending the run without a word.
trap 'echo "bench: failed (status $?) at ${BASH_SOURCE[0]}:$LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE=1G RUNS=3
BENCH_WORK_NAME=$1
shift
while [ $# -gt 0 ]; do
  case $1 in
    --size) SIZE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "usage: $0 [--size 1G] [--runs N]" >&2; exit 2 ;;
  esac
done
TOOLS_DIR=${WHARF_SHARED_TOOLS:-$(cd .. && pwd)/shared/tools}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/wharf
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
WORK=$cache/$BENCH_WORK_NAME
mkdir -p "$WORK"
# WHARF=/path/to/wharf measures another build (e.g. the last release) against the same peer.
if [ -z "${WHARF:-}" ]; then
  cargo build --release --quiet
  WHARF=$CARGO_TARGET_DIR/release/wharf
fi

# Access control is on, as in production: every request below signs in as the first-start
# admin (Basic on the data plane; the CLI through WHARF_USERNAME/WHARF_PASSWORD).
export WHARF_ADMIN_PASSWORD=bench-admin-password WHARF_USERNAME=admin WHARF_PASSWORD=bench-admin-password
export WHARF_CONFIG_DIR=$WORK/cli
AUTH=(-u "admin:$WHARF_ADMIN_PASSWORD")

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
min() { python3 -c "import sys;print(min(float(x) for x in sys.argv[1:]))" "$@"; }
median() { python3 -c "import sys,statistics;print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
bytes_of() { python3 -c "import re,sys;m=re.fullmatch(r'(\d+)([KMG]?)',sys.argv[1].upper());print(int(m[1])*{'':1,'K':1<<10,'M':1<<20,'G':1<<30}[m[2]])" "$1"; }
