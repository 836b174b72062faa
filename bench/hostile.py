#!/usr/bin/env python3
"""The client side of bench/hostile.sh: attacks and probes that need raw sockets.

    hostile.py stalled  PORT PID N               N clients GET a 32 MiB blob and never read
    hostile.py halfopen PORT PID N               N connections send half a request line
    hostile.py race     PORT                     8 PATCHes at one offset of one session
    hostile.py pushers  PORT SECONDS THREADS     small pushes in a loop: latencies, failures

Each prints one JSON object. Standard library only.
"""
import hashlib
import http.client
import json
import os
import resource
import socket
import sys
import threading
import time


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sockets(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def request(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


def push_blob(port, repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    status, _, _ = request(port, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
                           {"Content-Type": "application/octet-stream"})
    return status, d


def timed(f):
    t = time.monotonic()
    r = f()
    return r, (time.monotonic() - t) * 1000


def wait_closed(pid, baseline, limit):
    t = time.monotonic()
    while sockets(pid) > baseline + 2 and time.monotonic() - t < limit:
        time.sleep(0.1)
    return time.monotonic() - t


def seed(port):
    """A 32 MiB blob `big` and a small image `app:v1`; the blob's digest."""
    big = os.urandom(32 << 20)
    status, digest = push_blob(port, "big", big)
    assert status == 201, status
    layer, config = os.urandom(1024), b'{"architecture":"amd64","os":"linux"}'
    _, dl = push_blob(port, "app", layer)
    _, dc = push_blob(port, "app", config)
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dc, "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dl, "size": len(layer)}]}).encode()
    status, _, _ = request(port, "PUT", "/v2/app/manifests/v1", m,
                           {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 201, status
    return digest


def stalled(port, pid, n):
    raise_nofile()
    digest = seed(port)
    baseline = sockets(pid)
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET /v2/big/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        conns.append(s)
    time.sleep(2)
    rss = rss_mib(pid)
    (push, _), push_ms = timed(lambda: push_blob(port, "fresh", os.urandom(1 << 20)))
    (mget, _, _), mget_ms = timed(lambda: request(
        port, "GET", "/v2/app/manifests/v1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}))
    closed_after = wait_closed(pid, baseline, 120)
    for s in conns:
        s.close()
    return {"connections": n, "rss_mib": round(rss, 1), "push_status": push,
            "push_ms": round(push_ms, 1), "manifest_status": mget, "manifest_ms": round(mget_ms, 1),
            "closed_after_s": round(closed_after, 1)}


def halfopen(port, pid, n):
    raise_nofile()
    baseline = sockets(pid)
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /v2/ HT")
        conns.append(s)
    time.sleep(1)
    rss = rss_mib(pid)
    lat = []
    for _ in range(20):
        (status, _, _), ms = timed(lambda: request(port, "GET", "/v2/"))
        assert status == 200
        lat.append(ms)
    closed_after = wait_closed(pid, baseline, 120)
    for s in conns:
        s.close()
    lat.sort()
    return {"connections": n, "rss_mib": round(rss, 1), "fresh_p50_ms": round(lat[len(lat) // 2], 1),
            "fresh_max_ms": round(lat[-1], 1), "closed_after_s": round(closed_after, 1)}


def race(port):
    status, headers, _ = request(port, "POST", "/v2/race/blobs/uploads/")
    loc = headers.get("Location") or headers.get("location")
    bodies = [os.urandom(100_000) for _ in range(8)]
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Range: 0-99999\r\n"
            f"Content-Length: 100000\r\n\r\n").encode()
    conns = []
    for b in bodies:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(head + b[:50_000])
        conns.append(s)
    time.sleep(0.5)
    # None is answered before its body ends (nothing waits on a lock while a body streams).
    early = 0
    for s in conns:
        s.settimeout(0.05)
        try:
            s.recv(4096)
            early += 1
        except socket.timeout:
            pass
    for s, b in zip(conns, bodies):
        s.sendall(b[50_000:])
    answers, winner = [], None
    for s, b in zip(conns, bodies):
        s.settimeout(10)
        code = int(s.recv(4096).split(b" ")[1])
        answers.append(code)
        if code == 202:
            winner = b
    accepted = answers.count(202)
    d = "sha256:" + hashlib.sha256(winner).hexdigest()
    status, _, _ = request(port, "PUT", f"{loc}?digest={d}")
    return {"patches": 8, "answered_mid_body": early, "accepted": accepted,
            "refused_416": answers.count(416), "session_finished": status}


def pushers(port, seconds, threads):
    lat, failures = [], []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(t):
        i = 0
        while time.monotonic() < stop:
            i += 1
            layer = os.urandom(4096)
            config = json.dumps({"architecture": "amd64", "os": "linux", "t": t, "i": i}).encode()
            t0 = time.monotonic()
            try:
                s1, dl = push_blob(port, f"push/{t}", layer)
                s2, dc = push_blob(port, f"push/{t}", config)
                m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dc, "size": len(config)},
                                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dl, "size": len(layer)}]}).encode()
                s3, _, _ = request(port, "PUT", f"/v2/push/{t}/manifests/v{i}", m,
                                   {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
                ok = (s1, s2, s3) == (201, 201, 201)
            except OSError as e:
                ok, s3 = False, str(e)
            ms = (time.monotonic() - t0) * 1000
            with lock:
                lat.append(ms)
                if not ok:
                    failures.append(s3)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lat.sort()
    return {"pushes": len(lat), "failures": len(failures), "p50_ms": round(lat[len(lat) // 2], 1),
            "p99_ms": round(lat[int(len(lat) * 0.99)], 1), "max_ms": round(lat[-1], 1)}


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "stalled":
        out = stalled(int(args[0]), int(args[1]), int(args[2]))
    elif cmd == "halfopen":
        out = halfopen(int(args[0]), int(args[1]), int(args[2]))
    elif cmd == "race":
        out = race(int(args[0]))
    elif cmd == "pushers":
        out = pushers(int(args[0]), float(args[1]), int(args[2]))
    else:
        sys.exit(f"unknown command {cmd}")
    print(json.dumps(out))
