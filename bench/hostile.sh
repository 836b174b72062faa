#!/usr/bin/env bash
# Hostile-load benchmark: what attackers cost wharf, and what everyone else sees meanwhile.
#
#   bench/hostile.sh [--runs 1]
#
# Prints, for the release build on this machine:
#   stalled   1000 clients GET a 32 MiB blob and never read: server RSS, a fresh 1 MiB push
#             and a manifest GET meanwhile, when the write timeout has closed them all
#   halfopen  10 000 connections send half a request line: RSS, fresh GET /v2/ latency,
#             when the header timeout has closed them all
#   sources   14 malicious sources imported at once next to a healthy 200 MiB import: peak
#             RSS, each import's typed error and when it ended, the healthy import's time
#             alone and beside them
#   uploads   aggregate throughput of 64 chunked uploads of 16 MiB, all at once vs 4 at a
#             time (the same requests and client processes; only the concurrency differs)
#   race      8 PATCHes at one offset of one session: how many were accepted
#   commit    a 2 GiB import of 1000 small layers committing while 16 clients push: push
#             failures and latencies
source "$(dirname "$0")/common.sh" hostile "$@"
PY=bench/hostile.py
PID="" PORT=""
# Access control is off here: these figures are about the transfer paths under clients that are
# already signed in (an anonymous peer is refused at the first request, which costs nothing).
start() { # config-text -> PORT, PID
  PORT=$(free_port)
  rm -rf "$WORK/data"; printf '[auth]\nenabled = false\n%s\n' "$1" > "$WORK/wharf.toml"
  "$WHARF" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --gc-interval 0 \
    --config "$WORK/wharf.toml" 2>"$WORK/wharf.log" &
  PID=$!
  for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/v2/" && return; sleep 0.05; done
  echo "wharf did not start: $(cat "$WORK/wharf.log")" >&2; exit 1
}
stop() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
json() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d$2)" "$1"; }
ulimit -n "$(ulimit -Hn)"

echo "== stalled readers"
# (All on loopback: one address for attackers and others, so the per-client cap is lifted.)
start $'[limits]\nwrite_idle_timeout = "10s"\nmax_transfers_per_client = 100000'
STALLED=$(python3 $PY stalled "$PORT" "$PID" 1000); stop
echo "$STALLED"

echo "== half-open connections"
start $'[limits]\nheader_read_timeout = "10s"'
HALF=$(python3 $PY halfopen "$PORT" "$PID" 10000); stop
echo "$HALF"

echo "== racing PATCHes"
start ""
RACE=$(python3 $PY race "$PORT"); stop
echo "$RACE"

echo "== concurrent chunked uploads"
UPLOADS=64 UPLOAD_MIB=16
UPDIR="$WORK/up"
if [ ! -f "$UPDIR/$UPLOADS.sha" ]; then
  rm -rf "$UPDIR"; mkdir -p "$UPDIR"
  for i in $(seq "$UPLOADS"); do
    head -c $((UPLOAD_MIB << 19)) /dev/urandom > "$UPDIR/$i.a"
    head -c $((UPLOAD_MIB << 19)) /dev/urandom > "$UPDIR/$i.b"
    cat "$UPDIR/$i.a" "$UPDIR/$i.b" | sha256sum | cut -d' ' -f1 > "$UPDIR/$i.sha"
  done
  sync
fi
chunked_uploads() { # AT_ONCE -> MB/s aggregate
  local par=$1 dir=$UPDIR n=$UPLOADS mib=$UPLOAD_MIB
  local t0 t1
  t0=$(date +%s.%N)
  seq "$n" | xargs -P "$par" -I{} bash -c '
    set -e; p='"$PORT"'; d='"$dir"'; i={}
    loc=$(curl -sf -D - -o /dev/null -X POST "http://127.0.0.1:$p/v2/up/$i/blobs/uploads/" | tr -d "\r" | awk "tolower(\$1)==\"location:\" {print \$2}")
    half=$(stat -c %s "$d/$i.a")
    loc=$(curl -sf -D - -o /dev/null -X PATCH -H "Content-Range: 0-$((half-1))" --data-binary "@$d/$i.a" "http://127.0.0.1:$p$loc" | tr -d "\r" | awk "tolower(\$1)==\"location:\" {print \$2}")
    case $loc in *\?*) sep="&";; *) sep="?";; esac
    code=$(curl -s -o /dev/null -w "%{http_code}" -X PUT --data-binary "@$d/$i.b" "http://127.0.0.1:$p$loc${sep}digest=sha256:$(cat $d/$i.sha)")
    [ "$code" = 201 ] || { echo "upload $i: $code" >&2; exit 1; }'
  t1=$(date +%s.%N)
  python3 -c "print(round($n * $mib * 1.048576 / ($t1 - $t0)))"
}
UP4=() UP64=()
for _ in $(seq "$RUNS"); do
  start ""; UP4+=("$(chunked_uploads 4)"); stop
  start ""; UP64+=("$(chunked_uploads 64)"); stop
done
echo "4 uploads: ${UP4[*]} MB/s; 64 uploads: ${UP64[*]} MB/s"

echo "== malicious sources"
EVILPORT=$(free_port)
python3 tests/it/evilsource.py "$EVILPORT" > "$WORK/evil.out" 2>/dev/null &
EVILPID=$!
DISTPORT=$(free_port)
HARNESS_TMP=$WORK "$TOOLS_DIR/start-distribution.sh" "$DISTPORT" >/dev/null
python3 "$TOOLS_DIR/make-images.py" "127.0.0.1:$DISTPORT" --only single --sizes 200m,201m,2g --layers 1000 \
  --gzip-level 0 --workdir "$WORK/images" >/dev/null
start $'[import]\ninsecure_sources = ["127.0.0.1"]\nsync_wait = "0s"\nmax_running = 32\ndeadline = "30s"\nrequest_timeout = "5s"\nread_timeout = "3s"\nmin_throughput = "1KiB"\nthroughput_window = "6s"'
SOURCES=$(python3 - "$PORT" "$PID" "$EVILPORT" "$DISTPORT" <<'PY'
import json, sys, threading, time, urllib.request
port, pid, evil, dist = sys.argv[1:5]
sys.path.insert(0, "bench"); import hostile
base = f"http://127.0.0.1:{port}"
reg = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/Microsoft.ContainerRegistry/registries/default"
def submit(src, image, tag):
    body = json.dumps({"source": {"registryUri": src, "sourceImage": image}, "targetTags": [tag]}).encode()
    req = urllib.request.Request(f"{base}{reg}/importImage?api-version=2025-11-01", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.headers["Location"]
def wait(loc):
    while True:
        try:
            with urllib.request.urlopen(loc) as r:
                if r.status == 200: return "Succeeded"
        except urllib.error.HTTPError as e:
            return json.loads(e.read())["error"]["code"]
        time.sleep(0.05)
t = time.monotonic(); wait(submit(f"127.0.0.1:{dist}", "harness/single:200m", "alone:v1")); alone = time.monotonic() - t
scenarios = ["endless404", "endless401", "endless500", "always429", "endlessmanifest", "endlessreferrers",
             "endlessblob", "dripmanifest", "dripblob", "wideindex", "cycle", "referrerloop", "overflow", "redirect"]
peak = [0.0]; done = [False]
def sample():
    while not done[0]:
        peak[0] = max(peak[0], hostile.rss_mib(int(pid))); time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
start = time.monotonic(); results = {}
def run(s):
    code = wait(submit(f"127.0.0.1:{evil}", f"{s}/img:v1", f"{s}:v1")); results[s] = (code, round(time.monotonic() - start, 1))
ts = [threading.Thread(target=run, args=(s,)) for s in scenarios]
for th in ts: th.start()
# The healthy import: about the same size, other content than the one measured alone.
t = time.monotonic(); healthy = wait(submit(f"127.0.0.1:{dist}", "harness/single:201m", "healthy:v1")); beside = time.monotonic() - t
for th in ts: th.join()
done[0] = True
print(json.dumps({"alone_s": round(alone, 2), "beside_s": round(beside, 2), "healthy": healthy,
                  "peak_rss_mib": round(peak[0], 1), "imports": results}))
PY
)
stop
echo "$SOURCES"

echo "== a large import committing while clients push"
start $'[import]\ninsecure_sources = ["127.0.0.1"]\nsync_wait = "0s"'
COMMIT=$(python3 - "$PORT" "$DISTPORT" <<'PY'
import json, subprocess, sys, time, urllib.request
port, dist = sys.argv[1:3]
base = f"http://127.0.0.1:{port}"
reg = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/Microsoft.ContainerRegistry/registries/default"
pushers = subprocess.Popen([sys.executable, "bench/hostile.py", "pushers", port, "20", "16"], stdout=subprocess.PIPE)
time.sleep(1)
body = json.dumps({"source": {"registryUri": f"127.0.0.1:{dist}", "sourceImage": "harness/single:2g"}, "targetTags": ["big:v1"]}).encode()
req = urllib.request.Request(f"{base}{reg}/importImage?api-version=2025-11-01", data=body, method="POST", headers={"Content-Type": "application/json"})
t = time.monotonic()
loc = urllib.request.urlopen(req).headers["Location"]
while True:
    try:
        with urllib.request.urlopen(loc) as r:
            if r.status == 200: outcome = "Succeeded"; break
    except urllib.error.HTTPError as e:
        outcome = json.loads(e.read())["error"]["code"]; break
    time.sleep(0.05)
took = time.monotonic() - t
out = json.loads(pushers.communicate()[0])
out.update({"import": outcome, "import_s": round(took, 1)})
print(json.dumps(out))
PY
)
stop
echo "$COMMIT"
kill "$EVILPID" 2>/dev/null || true
HARNESS_TMP=$WORK "$TOOLS_DIR/stop-distribution.sh" "$DISTPORT" >/dev/null

python3 - "$STALLED" "$HALF" "$RACE" "$SOURCES" "$COMMIT" "${UP4[*]}" "${UP64[*]}" <<'PY'
import json, statistics, sys
st, ho, race, src, com = (json.loads(a) for a in sys.argv[1:6])
up4 = [float(x) for x in sys.argv[6].split()]; up64 = [float(x) for x in sys.argv[7].split()]
print("\nwharf under hostile load ($(nproc) cores, loopback)".replace("$(nproc)", str(__import__("os").cpu_count())))
print(f"1000 stalled readers of a 32 MiB blob: server RSS {st['rss_mib']} MiB; meanwhile a 1 MiB push "
      f"{st['push_ms']} ms, a manifest GET {st['manifest_ms']} ms; all closed by the write timeout "
      f"(10 s) after {st['closed_after_s']} s")
print(f"10 000 half-open connections: server RSS {ho['rss_mib']} MiB; fresh GET /v2/ p50 {ho['fresh_p50_ms']} ms, "
      f"max {ho['fresh_max_ms']} ms; all closed by the header timeout (10 s) after {ho['closed_after_s']} s")
print(f"8 racing PATCHes at one offset, all mid-body at once ({race['answered_mid_body']} answered before "
      f"their body ended): {race['accepted']} accepted, {race['refused_416']} refused (416); "
      f"the session finished as the winner's blob: {race['session_finished']}")
print(f"64 chunked uploads of 16 MiB, aggregate: 4 at a time {max(up4):.0f} MB/s (median "
      f"{statistics.median(up4):.0f}), all 64 at once {max(up64):.0f} MB/s (median "
      f"{statistics.median(up64):.0f}): {max(up64) / max(up4):.2f}x (best of {len(up4)})")
print(f"14 malicious sources at once: peak RSS {src['peak_rss_mib']} MiB; a healthy 200 MiB import "
      f"{src['alone_s']} s alone, {src['beside_s']} s beside them ({src['healthy']})")
for name, (code, at) in sorted(src["imports"].items(), key=lambda kv: kv[1][1]):
    print(f"    {name:18} {code:26} after {at} s")
print(f"2 GiB import of 1000 layers ({com['import']}, {com['import_s']} s) while 16 clients push: "
      f"{com['pushes']} pushes, {com['failures']} failed; latency p50 {com['p50_ms']} ms, "
      f"p99 {com['p99_ms']} ms, max {com['max_ms']} ms")
PY
