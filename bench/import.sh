#!/usr/bin/env bash
# Import benchmark: wharf's server-side import against skopeo, measured in one run on this
# machine, over loopback, from a CNCF distribution registry (the source).
#
#   bench/import.sh [--size 1G] [--runs 3]
#
# Figures (best of --runs, each on fresh targets):
#   single    - a --size, 5-layer image: `wharf import` vs `skopeo copy --all` from the
#               source into another distribution, and vs `skopeo copy` into wharf itself
#   multiarch - a 3-platform image with many layers (8 per platform + 1 shared, 8 MiB each):
#               `wharf import` vs `skopeo copy --all` into another distribution
#   re-import - `wharf import` end to end through the CLI when every blob is present
#   rss       - wharf's peak RSS during the --size import, and during a 10 MiB one
source "$(dirname "$0")/common.sh" bench-import "$@"
export HARNESS_TMP=$WORK

now() { date +%s.%N; }
since() { python3 -c "import sys;print(float(sys.argv[2])-float(sys.argv[1]))" "$1" "$(now)"; }

SRC=$(free_port)
"$TOOLS_DIR/start-distribution.sh" "$SRC" >/dev/null
DST=""
WPID="" WPORT=""
cleanup() {
  [ -n "$WPID" ] && kill "$WPID" 2>/dev/null || true
  "$TOOLS_DIR/stop-distribution.sh" "$SRC" >/dev/null 2>&1 || true
  [ -n "$DST" ] && "$TOOLS_DIR/stop-distribution.sh" "$DST" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "pushing the source images (once per run of this script)..." >&2
python3 "$TOOLS_DIR/make-images.py" "127.0.0.1:$SRC" --only single --sizes "10M,$SIZE" --gzip-level 0 \
  --workdir "$WORK/content" >/dev/null 2>&1
TAG=$(echo "$SIZE" | tr 'A-Z' 'a-z')
# A 3-platform index, 8 own layers per platform and one shared, 8 MiB each (random).
python3 - "127.0.0.1:$SRC" "$WORK/content/many" <<'PY'
import hashlib, http.client, json, os, sys
host, cache = sys.argv[1], sys.argv[2]
os.makedirs(cache, exist_ok=True)
def blob(name, n):
    p = os.path.join(cache, name)
    if not os.path.exists(p):
        with open(p + ".tmp", "wb") as f: f.write(os.urandom(n))
        os.replace(p + ".tmp", p)
    return open(p, "rb").read()
def push(repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    c = http.client.HTTPConnection(host, timeout=600)
    c.request("HEAD", f"/v2/{repo}/blobs/{d}"); r = c.getresponse(); r.read()
    if r.status == 200: return d
    c.request("POST", f"/v2/{repo}/blobs/uploads/"); r = c.getresponse(); r.read()
    loc = r.getheader("Location")
    c.request("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + d, body=data); r = c.getresponse(); r.read()
    assert r.status == 201, r.status
    return d
def put(repo, ref, body, mt):
    c = http.client.HTTPConnection(host); c.request("PUT", f"/v2/{repo}/manifests/{ref}", body=body, headers={"Content-Type": mt})
    r = c.getresponse(); r.read(); assert r.status == 201, r.status
repo = "bench/many"
shared = blob("shared", 8 << 20)
entries = []
for arch, var in [("amd64", None), ("arm64", None), ("arm", "v7")]:
    layers = [shared] + [blob(f"{arch}{var or ''}-{i}", 8 << 20) for i in range(8)]
    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": push(repo, l), "size": len(l)} for l in layers]
    cfg = json.dumps({"architecture": arch, "os": "linux", **({"variant": var} if var else {}), "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": push(repo, cfg), "size": len(cfg)},
                    "layers": descs}).encode()
    d = "sha256:" + hashlib.sha256(m).hexdigest()
    put(repo, d, m, "application/vnd.oci.image.manifest.v1+json")
    plat = {"architecture": arch, "os": "linux", **({"variant": var} if var else {})}
    entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": len(m), "platform": plat})
idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}).encode()
put(repo, "v1", idx, "application/vnd.oci.image.index.v1+json")
PY

start_wharf() {
  WPORT=$(free_port)
  rm -rf "$WORK/wharf-data"
  "$WHARF" serve --listen "127.0.0.1:$WPORT" --data-dir "$WORK/wharf-data" --insecure-source 127.0.0.1 \
    --gc-interval 0 --import-sync-wait 30s 2>"$WORK/wharf.log" &
  WPID=$!
  for _ in $(seq 100); do curl -sf "${AUTH[@]}" -o /dev/null "http://127.0.0.1:$WPORT/v2/" && break; sleep 0.05; done
  # Signed in once, untimed, as a user would be (a build without access control has no
  # `login`: nothing to do).
  "$WHARF" --server "http://127.0.0.1:$WPORT" login >/dev/null 2>&1 || true
}
stop_wharf() { kill "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=""; }
start_dst() { DST=$(free_port); "$TOOLS_DIR/start-distribution.sh" "$DST" >/dev/null; }
stop_dst() { "$TOOLS_DIR/stop-distribution.sh" "$DST" >/dev/null; DST=""; }
wharf_import() { # source-ref [extra args] -> seconds
  local t0; t0=$(now)
  "$WHARF" --server "http://127.0.0.1:$WPORT" import -n default --source "127.0.0.1:$SRC/$1" "${@:2}" >/dev/null
  since "$t0"
}
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$WPID/status"; }
skopeo_copy() { # all? src-ref dst-hostport -> seconds
  local t0 flag=""; [ "$1" = all ] && flag=--all
  t0=$(now)
  skopeo copy -q $flag --src-tls-verify=false --dest-tls-verify=false --dest-creds "admin:$WHARF_ADMIN_PASSWORD" "docker://127.0.0.1:$SRC/$2" "docker://$3/$2" >/dev/null
  since "$t0"
}

imp=() imp_skopeo_dist=() imp_skopeo_wharf=() many=() many_skopeo=() reimport=() hwm=0
for _ in $(seq "$RUNS"); do
  start_wharf
  imp+=("$(wharf_import "harness/single:$TAG")")
  h=$(hwm_kib); [ "$h" -gt "$hwm" ] && hwm=$h
  for i in 1 2 3 4 5; do reimport+=("$(wharf_import "harness/single:$TAG" -t "again:$i")"); done
  stop_wharf
  start_wharf; imp_skopeo_wharf+=("$(skopeo_copy one "harness/single:$TAG" "127.0.0.1:$WPORT")"); stop_wharf
  start_dst; imp_skopeo_dist+=("$(skopeo_copy all "harness/single:$TAG" "127.0.0.1:$DST")"); stop_dst
  start_wharf; many+=("$(wharf_import bench/many:v1)"); stop_wharf
  start_dst; many_skopeo+=("$(skopeo_copy all bench/many:v1 "127.0.0.1:$DST")"); stop_dst
done
start_wharf; wharf_import harness/single:10m >/dev/null; small_hwm=$(hwm_kib); stop_wharf

python3 - <<PY
single_t, sk_dist, sk_wharf = $(min "${imp[@]}"), $(min "${imp_skopeo_dist[@]}"), $(min "${imp_skopeo_wharf[@]}")
many_t, many_sk = $(min "${many[@]}"), $(min "${many_skopeo[@]}")
re_med, re_min = $(median "${reimport[@]}"), $(min "${reimport[@]}")
print(f"\nimport from CNCF distribution over loopback, best of $RUNS, $(nproc) cores")
print(f"$SIZE 5-layer image:   wharf import {single_t:6.2f} s | skopeo copy --all to distribution {sk_dist:6.2f} s ({sk_dist/single_t:4.1f}x) | skopeo copy to wharf {sk_wharf:6.2f} s ({sk_wharf/single_t:4.1f}x)")
print(f"3-platform, 25 layers: wharf import {many_t:6.2f} s | skopeo copy --all to distribution {many_sk:6.2f} s ({many_sk/many_t:4.1f}x)")
print(f"re-import, all blobs present, CLI end to end: median {re_med*1000:.0f} ms, best {re_min*1000:.0f} ms")
print(f"wharf peak RSS: {$hwm/1024:.1f} MiB during the $SIZE import, {$small_hwm/1024:.1f} MiB during a 10 MiB import")
PY
