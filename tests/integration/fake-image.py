#!/usr/bin/env python3
"""Stands in for the Cloudpods image service (glance) in integration tests and benchmarks, as
it behaved live (../shared/cloudpods/REAL-CONTROL-PLANE.md, last section):
  HEAD|GET /v1/images/<id>?format=<fmt>&scope=system with X-Auth-Token: a token keystone
    accepts (validated against --keystone; missing or bad -> 403, as glance answers). The
    catalog URL ends in /v1: a path without it is a 404. Unknown id -> 404. HEAD: 200, empty
    body, metadata as X-Image-Meta-* headers (Id, Name, Status, Disk_format, Size, Checksum
    (MD5), Min_disk, Is_public, Property-Os_type, Fast_hash). GET: the same headers,
    Content-Type application/octet-stream, Content-Length, the whole image; Range is ignored;
    the requested format is ignored too (an image stored as qcow2 comes as qcow2 with
    Disk_format qcow2, whatever format= asked).
Every request is checked and recorded, one JSON object per line in --record: {"method",
"path", "image_id", "query", "token_valid", "status", "problems"}; problems lists what the real
service would not accept or the agent should not send (missing scope=system or format).
Control (no token, not recorded): GET /__ready; POST /__image {"id", "path", "name",
"disk_format"} (upload: the file is read once for its MD5 and size); POST /__fault {"mode":
"none"|"slow"|"cut"|"badsum", "id": optional (all images when absent), "rate": bytes/s for
slow}; GET /__stats (GET bodies started/completed per image).
"""
import argparse
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from keystone_tokens import Tokens  # noqa: E402 (next to this file)

IMG = re.compile(r"^/v1/images/([A-Za-z0-9._-]{1,128})$")


# keystonemiddleware in front of the real image service keeps a validated token for
# token_cache_time, 300 s by default.
TOKEN_CACHE_SECONDS = 300


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("fake-image: " + fmt % args + "\n")

    def _json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _control(self, url):
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        if url.path == "/__ready":
            return self._json(200, {})
        if url.path == "/__stats":
            with srv.lock:
                return self._json(200, srv.stats)
        if url.path == "/__image" and self.command == "POST":
            md5, size = hashlib.md5(), 0
            with open(body["path"], "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    md5.update(chunk)
                    size += len(chunk)
            img = {"id": body["id"], "path": body["path"], "name": body.get("name", body["id"]),
                   "disk_format": body.get("disk_format", "qcow2"), "size": size,
                   "checksum": md5.hexdigest()}
            with srv.lock:
                srv.images[body["id"]] = img
            return self._json(200, img)
        if url.path == "/__fault" and self.command == "POST":
            with srv.lock:
                srv.faults[body.get("id") or "*"] = body
            return self._json(200, body)
        return self._json(404, {})

    def _fault(self, image_id):
        with srv_lock(self.server):
            f = self.server.faults.get(image_id) or self.server.faults.get("*") or {}
        return f.get("mode", "none"), f

    def _handle(self):
        srv = self.server
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/__"):
            return self._control(url)
        q = urllib.parse.parse_qs(url.query)
        m = IMG.match(url.path)
        rec = {"method": self.command, "path": self.path, "image_id": m.group(1) if m else None,
               "query": {k: v[0] for k, v in q.items()}, "problems": []}
        if q.get("scope", [None])[0] != "system":
            rec["problems"].append("no scope=system")
        if not q.get("format"):
            rec["problems"].append("no format=")
        if self.command not in ("HEAD", "GET"):
            rec["problems"].append("method " + self.command)
        rec["token_valid"] = srv.tokens.valid(self.headers.get("X-Auth-Token"))
        with srv.lock:
            img = srv.images.get(rec["image_id"]) if m else None
        if not m:
            status = 404
        elif rec["token_valid"] is None:
            status = 503
        elif not rec["token_valid"]:
            status = 403
        elif not img:
            status = 404
        else:
            status = 200
        rec["status"] = status
        with srv.lock:
            with open(srv.record, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if status != 200:
            # Cloudpods' httperrors body (top level), as glance answers.
            cls = {403: "ForbiddenError", 404: "ResourceNotFoundError",
                   503: "ServiceUnavailableError"}.get(status, "InternalServerError")
            return self._json(status, {"code": status, "class": cls,
                                       "details": "image service refused"})
        mode, fault = self._fault(img["id"])
        checksum = img["checksum"]
        if mode == "badsum":
            checksum = hashlib.md5(checksum.encode()).hexdigest()
        self.send_response(200)
        for k, v in (("Id", img["id"]), ("Name", img["name"]), ("Status", "active"),
                     ("Disk_format", img["disk_format"]), ("Size", str(img["size"])),
                     ("Checksum", checksum), ("Min_disk", str(img["size"] >> 20)),
                     ("Is_public", "false"), ("Property-Os_type", "Linux"),
                     ("Fast_hash", hashlib.md5(img["id"].encode()).hexdigest())):
            self.send_header("X-Image-Meta-" + k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(img["size"]))
        if mode == "cut" and self.command == "GET":
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        with srv.lock:
            st = srv.stats.setdefault(img["id"], {"started": 0, "completed": 0})
            st["started"] += 1
        with open(img["path"], "rb") as f:
            if mode == "none" or mode == "badsum":
                off = 0
                while off < img["size"]:
                    n = os.sendfile(self.connection.fileno(), f.fileno(), off, img["size"] - off)
                    if n <= 0:
                        return
                    off += n
            elif mode == "cut":
                self.wfile.write(f.read(img["size"] // 2))
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            elif mode == "slow":
                rate = int(fault.get("rate", 256 * 1024))
                for chunk in iter(lambda: f.read(max(rate // 10, 1)), b""):
                    self.wfile.write(chunk)
                    time.sleep(0.1)
        with srv.lock:
            st["completed"] += 1

    do_HEAD = do_GET = do_POST = do_PUT = do_DELETE = _handle


def srv_lock(srv):
    return srv.lock


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--keystone", required=True)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.tokens, srv.record = Tokens(a.keystone, TOKEN_CACHE_SECONDS), a.record
    srv.lock, srv.images, srv.faults, srv.stats = threading.Lock(), {}, {}, {}
    open(a.record, "a").close()
    srv.serve_forever()


if __name__ == "__main__":
    main()
