#!/usr/bin/env python3
"""Stands in for the Cloudpods region's task endpoint in integration tests.

POST /tasks/<task_id> is checked and recorded, one JSON object per line in --record:
  {"method", "path", "task_id", "status" (what we answered), "token_valid" (X-Auth-Token
   accepted by keystone), "body" (parsed JSON or null), "problems" ([] when all is well)}
Checks: POST only, path /tasks/<id> with a sane id, Content-Type application/json, a JSON
object body, "__status__" (if present) is "error" with a non-empty "__reason__" string, and
X-Auth-Token is a valid keystone token (validated with itself as subject against --keystone).
Anything else is recorded with a problem and answered 4xx. --fail-first N answers 500 to the
first N deliveries of each task id (the agent must retry). Writes its port to --port-file.
"""
import argparse
import json
import re
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TASK_PATH = re.compile(r"^/tasks/([A-Za-z0-9._-]{1,128})$")
MAX_BODY = 1 << 20


def keystone_valid(keystone, token):
    if not keystone or not token:
        return False
    req = urllib.request.Request(
        keystone.rstrip("/") + "/auth/tokens?nocatalog",
        headers={"X-Auth-Token": token, "X-Subject-Token": token},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("fake-region: " + (fmt % args) + "\n")

    def _answer(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        srv = self.server
        if self.path == "/__ready":
            return self._answer(200, {})
        problems = []
        rec = {"method": self.command, "path": self.path, "task_id": None, "body": None,
               "token_valid": False}
        m = TASK_PATH.match(self.path)
        if not m:
            problems.append("unexpected path " + self.path)
        else:
            rec["task_id"] = m.group(1)
        if self.command != "POST":
            problems.append("unexpected method " + self.command)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
        if length > MAX_BODY:
            problems.append("body too large")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/json":
            problems.append("Content-Type is %r" % ctype)
        try:
            body = json.loads(raw.decode("utf-8"))
            rec["body"] = body
            if not isinstance(body, dict):
                problems.append("body is not a JSON object")
            elif "__status__" in body:
                if body["__status__"] != "error":
                    problems.append("__status__ is %r" % body["__status__"])
                if not isinstance(body.get("__reason__"), str) or not body["__reason__"]:
                    problems.append("__status__ without a __reason__ string")
        except (ValueError, UnicodeDecodeError) as e:
            problems.append("body is not JSON: %s" % e)
        rec["token_valid"] = keystone_valid(srv.keystone, self.headers.get("X-Auth-Token"))
        if not rec["token_valid"]:
            problems.append("X-Auth-Token is missing or not a valid keystone token")

        status = 200
        if not rec["token_valid"]:
            status = 401
        elif problems:
            status = 404 if not m else 400
        else:
            with srv.lock:
                n = srv.deliveries.get(rec["task_id"], 0) + 1
                srv.deliveries[rec["task_id"]] = n
            if n <= srv.fail_first:
                status = 500
        rec["status"] = status
        rec["problems"] = problems
        with srv.lock:
            with open(srv.record, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if status == 200:
            self._answer(200, {"task": {"id": rec["task_id"], "stage": "OnCallback"}})
        else:
            self._answer(status, {"error": {"code": status, "details": "; ".join(problems)
                                            or "injected failure"}})

    do_POST = do_GET = do_PUT = do_DELETE = _handle


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--record", required=True)
    ap.add_argument("--keystone", required=True, help="keystone v3 URL")
    ap.add_argument("--fail-first", type=int, default=0)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.keystone, srv.record, srv.fail_first = a.keystone, a.record, a.fail_first
    srv.lock, srv.deliveries = threading.Lock(), {}
    open(a.record, "a").close()
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.server_address[1])
        import os
        os.rename(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
