#!/usr/bin/env bash
# Scale-out benchmark: a 2-node cluster on PostgreSQL + an S3-compatible store (s3s-fs)
# against the embedded default (SQLite + files), measured in the same run on this machine.
#
#   bench/cluster.sh [--size 1G] [--runs 3]
#
# Figures (best of and median of --runs, each run on fresh stores):
#   push  - monolithic upload of one --size blob (POST, then PUT with the whole body):
#           embedded, and cluster through node A
#   pull  - GET of that blob to /dev/null: embedded, and cluster through node B (which
#           reads it from s3s-fs as four ranged GETs in flight); and
#           through node B of a cluster with redirect_downloads on (the client follows
#           the 307 to s3s-fs)
#   rss   - peak RSS (VmHWM) of each server during it
#   fan-out - 64 concurrent clients pulling one image (manifest + 4 MiB layer, 20 times
#           each) spread over both nodes: errors, p50/p99 manifest GET latency, aggregate
#           MB/s; the same against one embedded server
# Needs the backends' tools (scripts/test.sh installs them).
source "$(dirname "$0")/common.sh" bench-cluster "$@"

N=$(bytes_of "$SIZE")
BLOB=$WORK/blob-$SIZE
if [ ! -f "$BLOB" ] || [ "$(stat -c %s "$BLOB")" != "$N" ]; then
  head -c "$N" /dev/urandom > "$BLOB.tmp" && mv "$BLOB.tmp" "$BLOB"
  sha256sum "$BLOB" | cut -d' ' -f1 > "$BLOB.sha256"
fi

# Under /tmp: PostgreSQL runs as its own user, which can't reach ~root.
BACKENDS=$(mktemp -d "${TMPDIR:-/tmp}/wharf-bench-backends.XXXXXX")
scripts/backends.sh start "$BACKENDS" postgres s3
trap 'stop_all; scripts/backends.sh stop "$BACKENDS"' EXIT
# shellcheck disable=SC1091
. "$BACKENDS/env"
head -c 32 /dev/urandom | base64 > "$WORK/sealing-key"

PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PIDS=()
}
wait_up() { for _ in $(seq 200); do curl -sf "${AUTH[@]}" -o /dev/null "http://127.0.0.1:$1/v2/" && return; sleep 0.05; done; echo "node on $1 did not start" >&2; exit 1; }

start_embedded() { # -> PORT_A=PORT_B, PID_A=PID_B
  rm -rf "$WORK/embedded"
  PORT_A=$(free_port)
  "$WHARF" serve --listen "127.0.0.1:$PORT_A" --data-dir "$WORK/embedded" --gc-interval 0 2>"$WORK/embedded.log" &
  PID_A=$!; PIDS+=("$PID_A"); PORT_B=$PORT_A; PID_B=$PID_A
  wait_up "$PORT_A"
}

start_cluster() { # -> PORT_A, PORT_B, PID_A, PID_B: two nodes on one fresh database and prefix
  local db=bench_$RANDOM$RANDOM
  psql "$WHARF_TEST_POSTGRES" -q -c "CREATE DATABASE $db"
  local meta=${WHARF_TEST_POSTGRES%/*}/$db
  local blobs=${WHARF_TEST_S3%%\?*}/$db?${WHARF_TEST_S3#*\?}
  PORT_A=$(free_port); PORT_B=$(free_port)
  cat > "$WORK/cluster.toml" <<EOF
public_url = "http://127.0.0.1:$PORT_A"
[storage]
metadata = "$meta"
blobs = "$blobs"
redirect_downloads = ${REDIRECT:-false}
[auth]
sealing_key_file = "$WORK/sealing-key"
EOF
  rm -rf "$WORK/node-a" "$WORK/node-b"
  "$WHARF" serve --config "$WORK/cluster.toml" --listen "127.0.0.1:$PORT_A" --data-dir "$WORK/node-a" --gc-interval 0 2>"$WORK/node-a.log" &
  PID_A=$!; PIDS+=("$PID_A"); wait_up "$PORT_A"
  "$WHARF" serve --config "$WORK/cluster.toml" --listen "127.0.0.1:$PORT_B" --data-dir "$WORK/node-b" --gc-interval 0 2>"$WORK/node-b.log" &
  PID_B=$!; PIDS+=("$PID_B"); wait_up "$PORT_B"
}

start_redirect() { REDIRECT=true start_cluster; }

hwm_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

push_blob() { # port file -> seconds
  local port=$1 file=$2 d loc
  d=sha256:$(cat "$file.sha256")
  loc=$(curl -sf "${AUTH[@]}" -D - -o /dev/null -X POST "http://127.0.0.1:$port/v2/bench/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
  case $loc in http*) loc=/${loc#*://*/} ;; esac
  loc=http://127.0.0.1:$port$loc
  case $loc in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  curl -sf "${AUTH[@]}" -o /dev/null -w '%{time_total}' -X PUT -H 'Content-Type: application/octet-stream' -T "$file" "$loc"
}
get_blob() { # port -> seconds (following a redirect, as clients do)
  curl -sfL "${AUTH[@]}" -o /dev/null -w '%{time_total}' "http://127.0.0.1:$1/v2/bench/blobs/sha256:$(cat "$BLOB.sha256")"
}

# The object store alone, as the cluster's floor: one PUT and one GET of the same bytes
# straight to s3s-fs (curl signs them), no wharf in between.
S3_URL=${WHARF_TEST_S3%%\?*}; S3_BUCKET=${S3_URL#s3://}
S3_ENDPOINT=$(python3 -c "import sys,urllib.parse as u;q=u.parse_qs(sys.argv[1].split('?',1)[1]);print(q['endpoint'][0])" "$WHARF_TEST_S3")
s3_curl() { curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null -w '%{time_total}' "$@"; }

declare -A T
for run in $(seq "$RUNS"); do
  T[s3-push]+=" $(s3_curl -T "$BLOB" "$S3_ENDPOINT/$S3_BUCKET/bench-floor")"
  T[s3-pull]+=" $(s3_curl "$S3_ENDPOINT/$S3_BUCKET/bench-floor")"
  for kind in embedded cluster redirect; do
    "start_$kind"
    T[$kind-push]+=" $(push_blob "$PORT_A" "$BLOB")"
    T[$kind-pull]+=" $(get_blob "$PORT_B")"
    T[$kind-rss]+=" $(python3 -c "print(max($(hwm_mib "$PID_A"), $(hwm_mib "$PID_B")))")"
    stop_all
  done
done

fanout() { # port_a port_b -> "errors p50_ms p99_ms MB/s"
  python3 - "$1" "$2" "$WHARF_ADMIN_PASSWORD" <<'EOF'
import base64, hashlib, json, os, statistics, sys, threading, time, urllib.request
a, b, pw = sys.argv[1], sys.argv[2], sys.argv[3]
auth = "Basic " + base64.b64encode(f"admin:{pw}".encode()).decode()
def req(port, method, path, body=None, headers={}):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers={"Authorization": auth, **headers})
    return urllib.request.urlopen(r, timeout=60)
layer = os.urandom(4 << 20)
config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
def push(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    req(a, "POST", f"/v2/fan/out/blobs/uploads/?digest={d}", data, {"Content-Type": "application/octet-stream"})
    return d
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": push(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": push(layer), "size": len(layer)}]}).encode()
req(a, "PUT", "/v2/fan/out/manifests/v1", manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
lat, errors, moved, lock = [], [0], [0], threading.Lock()
def client(i):
    port = a if i % 2 == 0 else b
    for _ in range(20):
        try:
            t0 = time.perf_counter()
            m = json.loads(req(port, "GET", "/v2/fan/out/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).read())
            t1 = time.perf_counter()
            n = 0
            with req(port, "GET", f"/v2/fan/out/blobs/{m['layers'][0]['digest']}") as r:
                while chunk := r.read(1 << 20):
                    n += len(chunk)
            with lock:
                lat.append(t1 - t0); moved[0] += n
        except Exception as e:
            with lock: errors[0] += 1
threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
wall = time.perf_counter() - t0
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
print(f"{errors[0]} {p(0.5):.1f} {p(0.99):.1f} {moved[0] / wall / 1e6:.0f}")
EOF
}
start_embedded; read -r fe_err fe_p50 fe_p99 fe_mbs <<<"$(fanout "$PORT_A" "$PORT_B")"; stop_all
start_cluster; read -r fc_err fc_p50 fc_p99 fc_mbs <<<"$(fanout "$PORT_A" "$PORT_B")"
fc_rss=$(python3 -c "print(max($(hwm_mib "$PID_A"), $(hwm_mib "$PID_B")))"); stop_all
start_redirect; read -r fr_err fr_p50 fr_p99 fr_mbs <<<"$(fanout "$PORT_A" "$PORT_B")"
fr_rss=$(python3 -c "print(max($(hwm_mib "$PID_A"), $(hwm_mib "$PID_B")))"); stop_all

mbs() { python3 -c "print(round($N / float('$1') / 1e6))"; }
ratio() { python3 -c "print(f'{float(\"$1\") / float(\"$2\"):.2f}')"; }
echo
echo "== cluster (2 nodes, PostgreSQL + s3s-fs) vs embedded, $SIZE, $RUNS runs (best / median)"
for op in push pull; do
  eb=$(min ${T[embedded-$op]}); em=$(median ${T[embedded-$op]})
  cb=$(min ${T[cluster-$op]}); cm=$(median ${T[cluster-$op]})
  sb=$(min ${T[s3-$op]}); sm=$(median ${T[s3-$op]})
  printf '%-5s embedded %6.2f s / %6.2f s (%s MB/s)   cluster %6.2f s / %6.2f s (%s MB/s)   cluster/embedded time %s / %s\n' \
    "$op" "$eb" "$em" "$(mbs "$eb")" "$cb" "$cm" "$(mbs "$cb")" "$(ratio "$cb" "$eb")" "$(ratio "$cm" "$em")"
  printf '      s3s-fs alone (curl, one request) %6.2f s / %6.2f s (%s MB/s)   cluster/s3s-fs time %s / %s\n' \
    "$sb" "$sm" "$(mbs "$sb")" "$(ratio "$cb" "$sb")" "$(ratio "$cm" "$sm")"
done
rb=$(min ${T[redirect-pull]}); rm_=$(median ${T[redirect-pull]})
printf 'pull, redirect_downloads on (307 to s3s-fs) %6.2f s / %6.2f s (%s MB/s)   /embedded %s / %s   /s3s-fs alone %s / %s\n' \
  "$rb" "$rm_" "$(mbs "$rb")" "$(ratio "$rb" "$(min ${T[embedded-pull]})")" "$(ratio "$rm_" "$(median ${T[embedded-pull]})")" \
  "$(ratio "$rb" "$(min ${T[s3-pull]})")" "$(ratio "$rm_" "$(median ${T[s3-pull]})")"

printf 'peak RSS during push+pull: embedded %s MiB, cluster node (max of both) %s MiB\n' \
  "$(python3 -c "print(max(float(x) for x in '${T[embedded-rss]}'.split()))")" \
  "$(python3 -c "print(max(float(x) for x in '${T[cluster-rss]}'.split()))")"
echo "64 clients x 20 pulls (manifest + 4 MiB layer), both nodes:"
printf '  embedded: %s errors, manifest GET p50 %s ms, p99 %s ms, %s MB/s\n' "$fe_err" "$fe_p50" "$fe_p99" "$fe_mbs"
printf '  cluster:  %s errors, manifest GET p50 %s ms, p99 %s ms, %s MB/s (node peak RSS %s MiB)\n' "$fc_err" "$fc_p50" "$fc_p99" "$fc_mbs" "$fc_rss"
printf '  cluster, redirect_downloads on: %s errors, manifest GET p50 %s ms, p99 %s ms, %s MB/s (node peak RSS %s MiB)\n' "$fr_err" "$fr_p50" "$fr_p99" "$fr_mbs" "$fr_rss"
