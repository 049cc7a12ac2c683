#!/usr/bin/env python3
"""Stands in for the Cloudpods region in integration tests: task callbacks and the endpoints a
host agent reports to, emulated statefully (hosts and their NICs, guest statuses).

Every request is checked and recorded, one JSON object per line in --record:
  {"method", "path", "kind" (task, host-list, host-create, host-update, add-netif, online,
   offline, ping, server-status or unknown), "task_id", "host_id", "sid", "status" (what we
   answered), "token_valid" (X-Auth-Token accepted by keystone), "body" (parsed JSON or null),
   "problems" ([] when all is well)}
Checks for every request: the method and path of a known route, X-Auth-Token a valid keystone
token (validated with itself as subject against --keystone); for requests with a body,
Content-Type application/json and a JSON object.
  POST /tasks/<id>: "__status__" (if present) is "error" with a non-empty "__reason__" string.
  GET /hosts?any_mac=<mac>: answers {"hosts": [...], "total": N} (hosts whose access_mac or a
    NIC has that MAC).
  POST /zones/<zone>/hosts (or POST /hosts), PUT /hosts/<id>: {"host": {...}} with access_ip,
    access_mac (MAC), manager_uri (http/https URL), cpu_count, node_count, mem_size (> 0),
    cpu_mhz, mem_reserved, storage_size (integers >= 0), cpu_desc, version (strings), host_type
    "kvm", sys_info (object). Creating a second host with the same access_mac is refused (409).
  POST /hosts/<id>/add-netif: {"host": {"mac", "ifname", "ip" (optional)}}.
  POST /hosts/<id>/online, /offline: {"host": {...}}; sets host_status.
  POST /hosts/<id>/ping: {"host": {...}} with memory_used_mb (integer), cpu_usage_percent
    (number, optional), storage_stats (list, optional).
  PUT /storagecaches/<scid>/cachedimages/<id>?auto_create=true: {"storagecachedimage":
    {"status": "active", "path": absolute}}; kept in state "cachedimages".
  PUT /servers/<sid>: {"server": {"progress": 0..100, "progress_mbps": number}}.
  POST /servers/<sid>/status: {"server": {"status": a Cloudpods guest status, "power_states":
    "on"|"off"}}; the latest per server is kept.
Anything wrong is recorded with a problem and answered 4xx (404 for unknown hosts).
Control (no token, not recorded): GET /__ready, GET /__state (hosts, servers, outage),
POST /__outage?seconds=N (answer 503 to every request for N seconds; 0 ends it).
--fail-first N answers 500 to the first N deliveries of each task id (the agent must retry).
--state FILE keeps the hosts across restarts of the fake. Writes its port to --port-file.
"""
import argparse
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TASK_PATH = re.compile(r"^/tasks/([A-Za-z0-9._-]{1,128})$")
ID = r"([A-Za-z0-9._-]{1,128})"
ROUTES = [
    ("GET", re.compile(r"^/hosts$"), "host-list"),
    ("POST", re.compile(r"^/zones/" + ID + r"/hosts$"), "host-create"),
    ("POST", re.compile(r"^/hosts$"), "host-create"),
    ("PUT", re.compile(r"^/hosts/" + ID + r"$"), "host-update"),
    ("POST", re.compile(r"^/hosts/" + ID + r"/add-netif$"), "add-netif"),
    ("POST", re.compile(r"^/hosts/" + ID + r"/online$"), "online"),
    ("POST", re.compile(r"^/hosts/" + ID + r"/offline$"), "offline"),
    ("POST", re.compile(r"^/hosts/" + ID + r"/ping$"), "ping"),
    ("POST", re.compile(r"^/servers/" + ID + r"/status$"), "server-status"),
    ("POST", TASK_PATH, "task"),
    ("PUT", re.compile(r"^/storagecaches/" + ID + r"/cachedimages/" + ID + r"$"), "cachedimage"),
    ("PUT", re.compile(r"^/servers/" + ID + r"$"), "server-update"),
]
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
GUEST_STATUSES = {"running", "ready", "suspend", "crashed", "stopping", "unknown", "starting",
                  "stop_fail", "start_fail", "deleting", "blockstream", "migrating"}
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


def is_int(v, minimum=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def check_host(h, problems):
    for k in ("access_ip", "cpu_desc", "version"):
        if not isinstance(h.get(k), str) or not h[k]:
            problems.append("host.%s is not a non-empty string" % k)
    if not isinstance(h.get("access_mac"), str) or not MAC.match(h["access_mac"]):
        problems.append("host.access_mac is not a MAC address: %r" % h.get("access_mac"))
    uri = h.get("manager_uri")
    if not isinstance(uri, str) or not re.match(r"^https?://[^/]+:\d+$", uri):
        problems.append("host.manager_uri is not http(s)://host:port: %r" % uri)
    for k in ("cpu_count", "node_count", "mem_size"):
        if not is_int(h.get(k), 1):
            problems.append("host.%s is not a positive integer" % k)
    for k in ("cpu_mhz", "mem_reserved", "storage_size"):
        if not is_int(h.get(k), 0):
            problems.append("host.%s is not an integer >= 0" % k)
    if h.get("host_type") != "kvm":
        problems.append("host.host_type is %r" % h.get("host_type"))
    if not isinstance(h.get("sys_info"), dict):
        problems.append("host.sys_info is not an object")


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

    def _control(self, url):
        srv = self.server
        if url.path == "/__ready":
            return self._answer(200, {})
        if url.path == "/__state":
            with srv.lock:
                return self._answer(200, {"hosts": srv.hosts, "servers": srv.servers,
                                          "cachedimages": srv.cachedimages,
                                          "outage": srv.outage_until > time.time()})
        if url.path == "/__outage" and self.command == "POST":
            q = urllib.parse.parse_qs(url.query)
            secs = float(q.get("seconds", ["0"])[0])
            with srv.lock:
                srv.outage_until = time.time() + secs if secs > 0 else 0
            return self._answer(200, {"outage_seconds": secs})
        return self._answer(404, {})

    def _handle(self):
        srv = self.server
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/__"):
            return self._control(url)
        problems = []
        # An outage is decided when the request arrives, as a region that is down refuses at
        # once (the token check below asks keystone and may take a while).
        with srv.lock:
            outage = srv.outage_until > time.time()
        rec = {"method": self.command, "path": self.path, "kind": "unknown", "task_id": None,
               "host_id": None, "sid": None, "body": None, "token_valid": False}
        m = None
        for method, rx, kind in ROUTES:
            mm = rx.match(url.path)
            if mm and method == self.command:
                m, rec["kind"] = mm, kind
                break
        if not m:
            problems.append("unexpected %s %s" % (self.command, url.path))
        kind = rec["kind"]
        if kind == "task":
            rec["task_id"] = m.group(1)
        elif kind in ("host-update", "add-netif", "online", "offline", "ping"):
            rec["host_id"] = m.group(1)
        elif kind in ("server-status", "server-update"):
            rec["sid"] = m.group(1)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, MAX_BODY)) if length > 0 else b""
        if length > MAX_BODY:
            problems.append("body too large")
        body = None
        if self.command in ("POST", "PUT"):
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/json":
                problems.append("Content-Type is %r" % ctype)
            try:
                body = json.loads(raw.decode("utf-8"))
                rec["body"] = body
                if not isinstance(body, dict):
                    problems.append("body is not a JSON object")
                    body = None
            except (ValueError, UnicodeDecodeError) as e:
                problems.append("body is not JSON: %s" % e)
        rec["token_valid"] = keystone_valid(srv.keystone, self.headers.get("X-Auth-Token"))
        if not rec["token_valid"]:
            problems.append("X-Auth-Token is missing or not a valid keystone token")

        status, reply = 200, {}
        if outage:
            status = 503
        elif not rec["token_valid"]:
            status = 401
        elif problems:
            status = 404 if not m else 400
        else:
            status, reply = self._route(kind, m, url, body, problems)
        rec["status"] = status
        rec["problems"] = problems
        with srv.lock:
            with open(srv.record, "a") as f:
                f.write(json.dumps(rec) + "\n")
        if status == 200:
            self._answer(200, reply)
        else:
            self._answer(status, {"error": {"code": status, "details": "; ".join(problems)
                                            or "injected failure"}})

    def _wrapped(self, body, key, problems):
        inner = body.get(key) if body else None
        if not isinstance(inner, dict):
            problems.append("body is not wrapped in %r" % key)
            return None
        return inner

    def _route(self, kind, m, url, body, problems):
        srv = self.server
        if kind == "task":
            if "__status__" in body:
                if body["__status__"] != "error":
                    problems.append("__status__ is %r" % body["__status__"])
                if not isinstance(body.get("__reason__"), str) or not body["__reason__"]:
                    problems.append("__status__ without a __reason__ string")
            if problems:
                return 400, {}
            with srv.lock:
                n = srv.deliveries.get(m.group(1), 0) + 1
                srv.deliveries[m.group(1)] = n
            if n <= srv.fail_first:
                return 500, {}
            return 200, {"task": {"id": m.group(1), "stage": "OnCallback"}}
        if kind == "host-list":
            q = urllib.parse.parse_qs(url.query)
            mac = q.get("any_mac", [None])[0]
            if not mac:
                problems.append("GET /hosts without any_mac")
                return 400, {}
            with srv.lock:
                found = [h for h in srv.hosts.values()
                         if h.get("access_mac") == mac or
                         any(n.get("mac") == mac for n in h.get("netifs", []))]
            return 200, {"hosts": found, "total": len(found)}
        if kind == "server-status":
            s = self._wrapped(body, "server", problems)
            if s is not None:
                if s.get("status") not in GUEST_STATUSES:
                    problems.append("server.status is %r" % s.get("status"))
                if s.get("power_states") not in ("on", "off"):
                    problems.append("server.power_states is %r" % s.get("power_states"))
            if problems:
                return 400, {}
            with srv.lock:
                srv.servers[m.group(1)] = {"status": s["status"],
                                           "power_states": s["power_states"]}
            return 200, {"server": {"id": m.group(1), "status": s["status"]}}
        if kind == "cachedimage":
            # hostutils.RemoteStoragecacheCacheImage: auto_create=true, status and path.
            if urllib.parse.parse_qs(url.query).get("auto_create") != ["true"]:
                problems.append("PUT cachedimages without auto_create=true")
            ci = self._wrapped(body, "storagecachedimage", problems)
            if ci is not None:
                if ci.get("status") != "active":
                    problems.append("storagecachedimage.status is %r" % ci.get("status"))
                if not isinstance(ci.get("path"), str) or not ci["path"].startswith("/"):
                    problems.append("storagecachedimage.path is %r" % ci.get("path"))
            if problems:
                return 400, {}
            with srv.lock:
                srv.cachedimages["%s/%s" % (m.group(1), m.group(2))] = ci
            return 200, {"storagecachedimage": dict(ci, storagecache_id=m.group(1),
                                                    cachedimage_id=m.group(2))}
        if kind == "server-update":
            # UpdateServerProgress: {"server": {progress, progress_mbps}}.
            s = self._wrapped(body, "server", problems)
            if s is not None:
                p = s.get("progress")
                if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 100:
                    problems.append("server.progress is %r" % p)
                if not isinstance(s.get("progress_mbps"), (int, float)):
                    problems.append("server.progress_mbps is %r" % s.get("progress_mbps"))
            if problems:
                return 400, {}
            return 200, {"server": {"id": m.group(1)}}
        h = self._wrapped(body, "host", problems)
        if h is None:
            return 400, {}
        if kind in ("host-create", "host-update"):
            check_host(h, problems)
            if problems:
                return 400, {}
            with srv.lock:
                if kind == "host-create":
                    if any(x.get("access_mac") == h["access_mac"] for x in srv.hosts.values()):
                        problems.append("a host with access_mac %s exists" % h["access_mac"])
                        return 409, {}
                    hid = str(uuid.uuid4())
                    rec = dict(h, id=hid, host_status="offline", netifs=[],
                               zone=m.group(1) if m.groups() else None)
                    srv.hosts[hid] = rec
                else:
                    hid = m.group(1)
                    if hid not in srv.hosts:
                        problems.append("no host " + hid)
                        return 404, {}
                    srv.hosts[hid].update(h)
                out = dict(srv.hosts[hid])
                srv.save()
            return 200, {"host": out}
        hid = m.group(1)
        with srv.lock:
            if hid not in srv.hosts:
                problems.append("no host " + hid)
                return 404, {}
            host = srv.hosts[hid]
            if kind == "add-netif":
                if not isinstance(h.get("mac"), str) or not MAC.match(h["mac"]):
                    problems.append("host.mac is not a MAC address: %r" % h.get("mac"))
                if not isinstance(h.get("ifname"), str) or not h["ifname"]:
                    problems.append("host.ifname is not a non-empty string")
                if "ip" in h and not isinstance(h["ip"], str):
                    problems.append("host.ip is not a string")
                if problems:
                    return 400, {}
                if not any(n["mac"] == h["mac"] for n in host["netifs"]):
                    host["netifs"].append({k: h[k] for k in ("mac", "ifname", "ip") if k in h})
            elif kind in ("online", "offline"):
                host["host_status"] = kind
            elif kind == "ping":
                if not is_int(h.get("memory_used_mb"), 0):
                    problems.append("host.memory_used_mb is not an integer >= 0")
                cpu = h.get("cpu_usage_percent")
                if cpu is not None and (not isinstance(cpu, (int, float)) or
                                        isinstance(cpu, bool) or not 0 <= cpu <= 100):
                    problems.append("host.cpu_usage_percent is %r" % cpu)
                if "storage_stats" in h and not isinstance(h["storage_stats"], list):
                    problems.append("host.storage_stats is not a list")
                if problems:
                    return 400, {}
                host["last_ping"] = time.time()
            out = dict(host)
            srv.save()
        return 200, {"host": out}

    do_POST = do_GET = do_PUT = do_DELETE = _handle


class Server(ThreadingHTTPServer):
    def save(self):
        if self.state_file:
            tmp = self.state_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.hosts, f)
            os.rename(tmp, self.state_file)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--record", required=True)
    ap.add_argument("--keystone", required=True, help="keystone v3 URL")
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--state")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.keystone, srv.record, srv.fail_first = a.keystone, a.record, a.fail_first
    srv.lock, srv.deliveries = threading.Lock(), {}
    srv.hosts, srv.servers, srv.outage_until, srv.state_file = {}, {}, 0, a.state
    srv.cachedimages = {}
    if a.state and os.path.exists(a.state):
        with open(a.state) as f:
            srv.hosts = json.load(f)
    open(a.record, "a").close()
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
