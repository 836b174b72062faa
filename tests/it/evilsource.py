#!/usr/bin/env python3
"""A malicious source registry, for import tests: every repository is one attack.

    evilsource.py PORT

Prints "ready" when listening (127.0.0.1 only). The first path segment of a repository
picks the behaviour; images are requested by tag `v1`:

  endless404        manifest GET: 404 with a body that never ends
  endless401        manifest GET: 401 Bearer challenge with an endless body; the token
                    service then answers 200 with an endless body
  endless500        manifest GET: 500 with an endless body, every time
  always429         manifest GET: 429 (Retry-After: 1), every time
  endlessmanifest   manifest GET: 200, a manifest media type, an endless body
  endlessreferrers  a valid image whose referrers answer is an endless index
  endlessblob       a valid image whose layer (1 MiB declared) never ends
  dripmanifest      manifest GET: one byte every 50 s
  dripblob          a valid image whose layer (1 MiB) comes one byte every 50 s
  wideindex         an index of 20 000 children, each declared 4 MiB
  cycle             an index whose child, when asked for, is served as the index itself
  referrerloop      image M, a referrer R of M (subject M), and R's referrers listing M
  overflow          layers whose sizes add up past 2^63
  redirect          a valid image whose layer redirects to a signed link-local URL
GET /_evil/stats answers request counts per scenario and kind, as JSON.
"""
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER_SIZE = 1 << 20
SECRET = "X-Amz-Signature=SECRETSIGNATURE0123456789"


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def manifest(layers, subject=None, artifact_type=None):
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest(CONFIG), "size": len(CONFIG)},
         "layers": layers}
    if subject is not None:
        m["subject"] = {"mediaType": OCI_MANIFEST, "digest": digest(subject), "size": len(subject)}
    if artifact_type:
        m["artifactType"] = artifact_type
    return json.dumps(m).encode()


# A layer that is never served whole: its digest is of bytes nobody sends.
GHOST = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(b"ghost" * 7),
         "size": LAYER_SIZE}
IMAGE = manifest([GHOST])
REFERRER = manifest([], subject=IMAGE, artifact_type="application/vnd.example.sig")
WIDE = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
    {"mediaType": OCI_MANIFEST, "digest": "sha256:%064x" % i, "size": 4 << 20}
    for i in range(20000)]}, separators=(",", ":")).encode()
# The cycle: an index listing a child whose declared size is the index's own, so that the
# source can answer the child request with the index (the closest a hash allows).
CYCLE_CHILD = "sha256:" + "c" * 64


def cycle_index(size):
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": CYCLE_CHILD, "size": size}]}).encode()


CYCLE = cycle_index(0)
while len(CYCLE) != len(cycle_index(len(CYCLE))):
    CYCLE = cycle_index(len(CYCLE))
CYCLE = cycle_index(len(CYCLE))
OVERFLOW = manifest([
    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:%064x" % i,
     "size": (1 << 63) - 1} for i in range(3)])

lock = threading.Lock()
stats = {}


def count(key):
    with lock:
        stats[key] = stats.get(key, 0) + 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body, ctype="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def endless(self, status, ctype="application/json", headers=(), prefix=b""):
        """Headers, then bytes until the client goes away."""
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Connection", "close")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        chunk = b"x" * 65536
        try:
            self.wfile.write(prefix)
            while True:
                self.wfile.write(chunk)
        except OSError:
            pass

    def drip(self, status, length, ctype):
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"{")
                self.wfile.flush()
                time.sleep(50)
        except OSError:
            pass

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/_evil/stats":
            with lock:
                return self.send(200, json.dumps(stats).encode())
        if path == "/v2/":
            return self.send(200, b"{}")
        if path == "/token-endless":
            count("endless401/token")
            return self.endless(200, prefix=b'{"token":"')
        parts = path.split("/")
        # /v2/<scenario>/img/<kind>/<ref>
        if len(parts) < 6 or parts[1] != "v2":
            return self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')
        scenario, kind, ref = parts[2], parts[4], parts[5]
        count(f"{scenario}/{kind}")
        getattr(self, "s_" + scenario, self.unknown)(kind, ref)

    do_HEAD = do_GET

    def unknown(self, kind, ref):
        self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no such scenario"}]}')

    def image(self, kind, ref, layer=None, referrers=None):
        """A valid image (IMAGE) with its config; `layer` serves the ghost layer."""
        if kind == "manifests" and ref in ("v1", digest(IMAGE)):
            return self.send(200, IMAGE, OCI_MANIFEST)
        if kind == "manifests" and ref == digest(REFERRER):
            return self.send(200, REFERRER, OCI_MANIFEST)
        if kind == "blobs" and ref == digest(CONFIG):
            return self.send(200, CONFIG, "application/octet-stream")
        if kind == "blobs" and ref == GHOST["digest"] and layer:
            return layer()
        if kind == "referrers" and referrers:
            return referrers(ref)
        if kind == "referrers":
            return self.send(200, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                              "manifests": []}).encode(), OCI_INDEX)
        self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}')

    def s_endless404(self, kind, ref):
        self.endless(404)

    def s_endless401(self, kind, ref):
        realm = f'Bearer realm="http://127.0.0.1:{PORT}/token-endless",service="evil"'
        self.endless(401, headers=[("WWW-Authenticate", realm)])

    def s_endless500(self, kind, ref):
        self.endless(500)

    def s_always429(self, kind, ref):
        self.send(429, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
                  headers=[("Retry-After", "1")])

    def s_endlessmanifest(self, kind, ref):
        self.endless(200, OCI_MANIFEST, prefix=b'{"schemaVersion":2,"layers":["')

    def s_endlessreferrers(self, kind, ref):
        self.image(kind, ref, referrers=lambda r: self.endless(
            200, OCI_INDEX, prefix=b'{"schemaVersion":2,"manifests":["'))

    def s_endlessblob(self, kind, ref):
        self.image(kind, ref, layer=lambda: self.endless(200, "application/octet-stream"))

    def s_dripmanifest(self, kind, ref):
        self.drip(200, 1000, OCI_MANIFEST)

    def s_dripblob(self, kind, ref):
        self.image(kind, ref, layer=lambda: self.drip(200, LAYER_SIZE, "application/octet-stream"))

    def s_wideindex(self, kind, ref):
        if kind == "manifests" and ref == "v1":
            return self.send(200, WIDE, OCI_INDEX)
        self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}')

    def s_cycle(self, kind, ref):
        if kind == "manifests":
            return self.send(200, CYCLE, OCI_INDEX)
        self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}')

    def s_referrerloop(self, kind, ref):
        def referrers(of):
            listed = REFERRER if of == digest(IMAGE) else IMAGE
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": digest(listed), "size": len(listed),
                 "artifactType": "application/vnd.example.sig"}]}).encode()
            self.send(200, body, OCI_INDEX)
        self.image(kind, ref, referrers=referrers)

    def s_overflow(self, kind, ref):
        if kind == "manifests":
            return self.send(200, OVERFLOW, OCI_MANIFEST)
        self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}')

    def s_redirect(self, kind, ref):
        def layer():
            self.send(307, b"", headers=[
                ("Location", f"http://169.254.169.254/latest/blob?{SECRET}")])
        self.image(kind, ref, layer=layer)


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
