#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real registry, for import tests.

    faultproxy.py PORT UPSTREAM_HOST:PORT [--rate BYTES_PER_SEC] [--first-429 N]
                  [--retry-after SECONDS] [--break-after BYTES] [--break-every BYTES] [--first-503 N]
                  [--token-auth USER:PASS | --token-anonymous] [--token-post-only]

Forwards every request to the upstream registry unchanged, except:
  --rate          blob bodies are sent at most this fast (so a test can act mid-transfer);
  --first-429     the first N blob GETs are answered 429 Too Many Requests with Retry-After;
  --break-after   the first GET of each blob is cut off after this many body bytes
                  (the connection is closed), so that the client must resume with Range;
  --break-every   every blob GET (resumed ones too) is cut off after this many body bytes;
  --first-503     the first N blob GETs are answered 503 Service Unavailable;
  --token-auth    the Docker token flow in front of the registry: /v2/ wants a Bearer token,
                  which /token issues for USER:PASS (GET with Basic auth, or the OAuth2 POST
                  form: grant_type=password, or grant_type=refresh_token with PASS alone);
  --token-anonymous  the same, but tokens are issued to anyone (Docker Hub's anonymous pulls);
  --token-post-only  /token answers GET with 404, so clients must POST.
GET /_proxy/stats answers counters as JSON. Binds 127.0.0.1 only.
"""
import argparse
import base64
import os
import urllib.parse
import http.client
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("upstream")
ap.add_argument("--rate", type=int, default=0)
ap.add_argument("--first-429", type=int, default=0)
ap.add_argument("--retry-after", type=int, default=1)
ap.add_argument("--break-after", type=int, default=0)
ap.add_argument("--break-every", type=int, default=0)
ap.add_argument("--first-503", type=int, default=0)
ap.add_argument("--token-auth", default="")
ap.add_argument("--token-anonymous", action="store_true")
ap.add_argument("--token-post-only", action="store_true")
args = ap.parse_args()
TOKEN = "tok-" + os.urandom(8).hex()

lock = threading.Lock()
stats = {"requests": 0, "blob_gets": 0, "served_429": 0, "served_503": 0, "range_requests": 0, "blob_bytes": 0,
         "broken": 0, "tokens_get": 0, "tokens_post": 0, "token_refused": 0}
broken_once = set()
BLOB = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def token_endpoint(self):
        user, _, password = args.token_auth.partition(":")
        if self.command == "GET":
            if args.token_post_only:
                return self.reply(404, b'{"error":"use POST"}')
            auth = self.headers.get("Authorization", "")
            ok = args.token_anonymous or (auth.startswith("Basic ") and
                                           base64.b64decode(auth[6:]).decode() == f"{user}:{password}")
            key = "tokens_get"
            body = json.dumps({"token": TOKEN, "expires_in": 300}).encode()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            get = lambda k: (form.get(k) or [""])[0]
            if get("grant_type") == "password":
                ok = get("username") == user and get("password") == password
            elif get("grant_type") == "refresh_token":
                ok = get("refresh_token") == password
            else:
                ok = False
            key = "tokens_post"
            body = json.dumps({"access_token": TOKEN, "expires_in": 300}).encode()
        with lock:
            stats[key if ok else "token_refused"] += 1
        if not ok:
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}')
        self.reply(200, body)

    def handle_any(self):
        token_auth = args.token_auth or args.token_anonymous
        if token_auth and self.path.split("?")[0] == "/token":
            return self.token_endpoint()
        if token_auth and self.path.startswith("/v2/") and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            repo = re.sub(r"/(manifests|blobs|tags|referrers)/.*$", "", self.path[4:].split("?")[0])
            challenge = (f'Bearer realm="http://127.0.0.1:{args.port}/token",service="faultproxy",'
                         f'scope="repository:{repo}:pull"')
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                              [("WWW-Authenticate", challenge)])
        if self.path == "/_proxy/stats":
            body = json.dumps(stats).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        path = self.path.split("?")[0]
        is_blob_get = self.command == "GET" and BLOB.match(path)
        with lock:
            stats["requests"] += 1
            if is_blob_get:
                stats["blob_gets"] += 1
                if self.headers.get("Range"):
                    stats["range_requests"] += 1
            send_429 = is_blob_get and stats["served_429"] < args.first_429
            if send_429:
                stats["served_429"] += 1
            send_503 = is_blob_get and not send_429 and stats["served_503"] < args.first_503
            if send_503:
                stats["served_503"] += 1
            cut = is_blob_get and args.break_after and path not in broken_once and not self.headers.get("Range")
            if cut:
                broken_once.add(path)
            limit = args.break_after if cut else args.break_every if is_blob_get else 0
            cut = bool(limit)
        if send_429:
            body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
            self.send_response(429)
            self.send_header("Retry-After", str(args.retry_after))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if send_503:
            return self.reply(503, b'{"errors":[{"code":"UNAVAILABLE","message":"try again"}]}')
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else None
        up = http.client.HTTPConnection(args.upstream, timeout=120)
        dropped = ("host", "connection") + (("authorization",) if token_auth else ())
        headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        headers["Host"] = args.upstream
        up.request(self.command, self.path, body=data, headers=headers)
        r = up.getresponse()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() in ("connection", "transfer-encoding"):
                continue
            if k.lower() == "location":
                v = v.replace(args.upstream, f"127.0.0.1:{args.port}")
            self.send_header(k, v)
        chunked = r.getheader("Content-Length") is None and self.command != "HEAD"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = 0
        start = time.time()
        while True:
            chunk = r.read(64 * 1024)
            if not chunk:
                break
            if cut and sent + len(chunk) > limit:
                chunk = chunk[: limit - sent]
                self.wfile.write(chunk)
                self.wfile.flush()
                with lock:
                    stats["broken"] += 1
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.wfile.write(chunk)
            sent += len(chunk)
            if is_blob_get:
                with lock:
                    stats["blob_bytes"] += len(chunk)
            if args.rate and is_blob_get:
                ahead = sent / args.rate - (time.time() - start)
                if ahead > 0:
                    time.sleep(ahead)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


server = ThreadingHTTPServer(("127.0.0.1", args.port), Proxy)
server.daemon_threads = True
print("ready", flush=True)
sys.stdout.flush()
server.serve_forever()
