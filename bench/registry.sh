#!/usr/bin/env bash
# Registry-core benchmark: wharf against the CNCF distribution registry, measured in the
# same run on this machine, over loopback.
#
#   bench/registry.sh [--size 1G] [--runs 3]
#
# Figures (best of --runs, each run on a fresh registry):
#   push  - monolithic upload of one blob (POST, then PUT with the whole body)
#   skopeo - chunked push: `skopeo copy` of a 5-layer image from an OCI layout
#   get   - GET of the blob to /dev/null
#   rss   - the server's peak RSS (VmHWM) during a push of --size and of 10 MiB
# Prints MB/s, the ratio wharf/distribution, and the RSS figures.
source "$(dirname "$0")/common.sh" bench "$@"

N=$(bytes_of "$SIZE")
BLOB=$WORK/blob-$SIZE
if [ ! -f "$BLOB" ] || [ "$(stat -c %s "$BLOB")" != "$N" ]; then
  head -c "$N" /dev/urandom > "$BLOB.tmp" && mv "$BLOB.tmp" "$BLOB"
  sha256sum "$BLOB" | cut -d' ' -f1 > "$BLOB.sha256"
fi
for small in 10M 100M; do
  f=$WORK/blob-$small
  [ -f "$f" ] || { head -c "$(bytes_of $small)" /dev/urandom > "$f"; sha256sum "$f" | cut -d' ' -f1 > "$f.sha256"; }
done
# A 5-layer image of the same size as an OCI layout, for skopeo (stored layers: fast to make).
python3 "$TOOLS_DIR/make-images.py" 127.0.0.1:1 --no-push --only single --sizes "$SIZE" --gzip-level 0 \
  --workdir "$WORK/images" >/dev/null 2>&1
LAYOUT=$WORK/images/layout
REF=single-$(echo "$SIZE" | tr 'A-Z' 'a-z')

PID=""
start() { # wharf|distribution -> sets PORT, PID
  PORT=$(free_port)
  if [ "$1" = wharf ]; then
    rm -rf "$WORK/wharf-data"
    "$WHARF" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/wharf-data" --gc-interval 0 2>"$WORK/wharf.log" &
    PID=$!
    for _ in $(seq 100); do curl -sf "${AUTH[@]}" -o /dev/null "http://127.0.0.1:$PORT/v2/" && break; sleep 0.05; done
  else
    PID=$(HARNESS_TMP=$WORK "$TOOLS_DIR/start-distribution.sh" "$PORT")
  fi
}
stop() {
  if [ "$1" = wharf ]; then kill "$PID"; wait "$PID" 2>/dev/null || true; rm -rf "$WORK/wharf-data"
  else HARNESS_TMP=$WORK "$TOOLS_DIR/stop-distribution.sh" "$PORT" >/dev/null; fi
}
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$PID/status"; }
push_blob() { # file -> seconds
  local file=$1 d loc
  d=sha256:$(cat "$file.sha256")
  loc=$(curl -sf "${AUTH[@]}" -D - -o /dev/null -X POST "http://127.0.0.1:$PORT/v2/bench/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
  case $loc in http*) ;; *) loc=http://127.0.0.1:$PORT$loc ;; esac
  case $loc in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  curl -sf "${AUTH[@]}" -o /dev/null -w '%{time_total}' -X PUT -H 'Content-Type: application/octet-stream' -T "$file" "$loc"
}
get_blob() {
  curl -sfL "${AUTH[@]}" -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/v2/bench/blobs/sha256:$(cat "$BLOB.sha256")"
}
skopeo_push() {
  local t0 t1
  t0=$(date +%s.%N)
  skopeo copy -q --dest-tls-verify=false --dest-creds "admin:$WHARF_ADMIN_PASSWORD" "oci:$LAYOUT:$REF" "docker://127.0.0.1:$PORT/bench/image:1" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print($t1-$t0)"
}

declare -A R
for server in distribution wharf; do
  pushes=() gets=() skopeos=() hwm=0 get_hwm=0
  for _ in $(seq "$RUNS"); do
    start $server
    pushes+=("$(push_blob "$BLOB")")
    [ $server = wharf ] && hwm=$(( $(hwm_kib) > hwm ? $(hwm_kib) : hwm ))
    for _ in 1 2; do gets+=("$(get_blob)"); done
    [ $server = wharf ] && get_hwm=$(( $(hwm_kib) > get_hwm ? $(hwm_kib) : get_hwm ))
    stop $server
    start $server
    skopeos+=("$(skopeo_push)")
    stop $server
  done
  R[$server.push]=$(min "${pushes[@]}")
  R[$server.get]=$(min "${gets[@]}")
  R[$server.skopeo]=$(min "${skopeos[@]}")
  R[$server.hwm]=$hwm
  R[$server.get_hwm]=$get_hwm
done
# Peak RSS of a fresh server pushing one blob of each size: flat once the pipeline is full.
declare -A SMALL_HWM
for small in 10M 100M; do
  start wharf; push_blob "$WORK/blob-$small" >/dev/null; SMALL_HWM[$small]=$(hwm_kib); stop wharf
done

python3 - "$N" <<PY
import sys
n = int(sys.argv[1]); mb = n / 1e6
r = {k: float(v) for k, v in [$(for k in "${!R[@]}"; do printf '("%s","%s"),' "$k" "${R[$k]}"; done)]}
print(f"\nwharf vs CNCF distribution, $SIZE ({n} bytes), best of $RUNS, loopback, $(nproc) cores")
print(f"{'':28}{'distribution':>14}{'wharf':>12}{'ratio':>9}")
for key, label in [("push", "monolithic push (MB/s)"), ("skopeo", "skopeo copy push (MB/s)"), ("get", "GET blob (MB/s)")]:
    d, w = mb / r[f"distribution.{key}"], mb / r[f"wharf.{key}"]
    print(f"{label:28}{d:14.0f}{w:12.0f}{w / d:8.2f}x")
print(f"wharf peak RSS, push of 10 MiB / 100 MiB / $SIZE: {${SMALL_HWM[10M]} / 1024:.1f} / {${SMALL_HWM[100M]} / 1024:.1f} / {r['wharf.hwm'] / 1024:.1f} MiB;"
      f" after also serving two $SIZE GETs: {r['wharf.get_hwm'] / 1024:.1f} MiB")
PY
