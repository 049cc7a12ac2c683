#!/usr/bin/env python3
"""Stands in for the Cloudpods region in integration tests: task callbacks and the endpoints a
host agent reports to, emulated statefully after the real region (CONTRACT.md 1.1, 3.2, 5 A
and REAL-CONTROL-PLANE.md): zones, wires, networks found by IP, hosts and their netifs,
storagecaches, storages, hoststorages, guest statuses.

Every request is checked and recorded, one JSON object per line in --record:
  {"method", "path", "kind" (task, host-list, host-create, host-update, add-netif, online,
   offline, ping, network-list, wire-get, storagecache-list, storagecache-create, storage-get,
   storage-create, storage-update, hoststorage-get, hoststorage-create, server-status or
   unknown), "task_id", "host_id", "sid", "status" (what we answered), "token_valid"
   (X-Auth-Token accepted by keystone), "token_sha" (sha256 of the token, first 16 hex),
   "token_rejected" (present when a token refused after /__reject-tokens was sent),
   "body" (parsed JSON or null), "ignored" (add-netif fields the real region silently
   ignores), "problems" ([] when all is well)}
Checks for every request: the method and path of a known route, X-Auth-Token a valid keystone
token (validated with itself as subject against --keystone; a bad one gets 403
ForbiddenError, as the real region answers); for requests with a body, Content-Type
application/json and a JSON object. Every body's field names and types are checked against
api.HostCreateInput, HostAddNetifInput, StoragecacheCreateInput, StorageCreateInput,
HoststorageCreateInput and SHostPingInput (FIELDS below): an unknown or mistyped field is a
problem and a 400, except in add-netif, where the real region ignores unknown fields (200,
listed in "ignored").
  GET /networks?ip=<ip>&is_classic=true&scope=system: the networks (--network) holding ip
    (within guest_ip_start..guest_ip_end, as the real region counts it).
  GET /wires/<id|name>: {"wire": {id, name, zone_id}} or 404.
  GET /hosts?...&scope=system&any_mac=<mac>: {"hosts": [...], "total": N}.
  POST /zones/<zone>/hosts (or POST /hosts): host_type "hypervisor", access_mac, a
    generate_name or name; a missing zone is 404; a second host with the same access_mac is
    409; the new host is enabled: false, host_status offline.
  PUT /hosts/<id>: no generate_name, name or mem_reserved (an admin's changes survive).
  POST /hosts/<id>/add-netif: mac; an ip_addr in no network is 400 "IP x not attach to any
    wire"; a wire (name or id) must exist; the netif takes the network's wire. The real
    region keeps ip_addr only if a network with a gateway holds it (else it gives the NIC,
    and an admin NIC's host, another address): 400 here, "Cannot allocate IP x, not
    reachable" with require_designated_ip (as the real one answers).
  GET /storagecaches?external_id=&path=, POST /storagecaches {"storagecache": {name, path,
    external_id}}.
  GET /storages/<id|name>, POST /storages {"storage": {name (unique), capacity, ...,
    storage_type "local", medium_type ssd|rotate, zone (must exist), storagecache_id (must
    exist)}}, PUT /storages/<id>.
  GET, POST /hosts/<id>/storages/<storage id> {"hoststorage": {mount_point,
    is_root_partition}}: host of type hypervisor, storage known, no second link (409).
  POST /hosts/<id>/online, /offline: sets host_status (online also status running); going
    online brings the host's attached storages online (SyncStatusWithHosts): a storage linked
    after online stays offline.
  POST /hosts/<id>/ping: SHostPingInput; storage_stats update storages by storage_id.
  PUT /storagecaches/<scid>/cachedimages/<id>?auto_create=true: {"storagecachedimage":
    {"status": "active", "path": absolute}}; kept in state "cachedimages".
  PUT /servers/<sid>: {"server": {"progress": 0..100, "progress_mbps": number}}.
  POST /servers/<sid>/status: {"server": {status, power_states, host_id, block_jobs_count,
    reason}} (api.HostUploadGuestStatusInput): status one SetStatusFromHost knows (running,
    ready, suspend, unknown, block_stream), power_states "on"|"off", host_id a host of this
    region; the latest per server is kept. Unknown fields are accepted (the real region
    ignores them) and listed in "ignored".
  POST /servers/upload-status: {"servers": {"guests": {<sid>: {status, power_states, host_id}}}}
    (PerformUploadStatus), each checked as above.
  POST /servers/<sid>/metadata: {"server": {key: string or number}}; __qemu_version "x.y.z",
    __vnc_port 1..65535, __vnc_password a string. Kept per server (GET /__state "metadata").
  POST /tasks/<id>: "__status__" (if present) is "error" with a non-empty "__reason__" string;
    a callback with status and power_states (the status route's) is checked as a status, with
    "notfound" allowed; no callback carries an old-style "error" object; the deploy info the
    region saves (os, account, key, distro, version, arch, language, current_version) is strings,
    telegraf_deployed a bool.
Anything wrong is recorded with a problem and answered 4xx (404 for unknown records), in the
region's error shape {"code", "class", "details"}.
Control (no token, not recorded): GET /__ready, GET /__state (zones, wires, networks, hosts,
storagecaches, storages, hoststorages, servers, outage), POST /__outage?seconds=N (answer 503
to every request for N seconds; 0 ends it), POST /__delete-host?id=ID (as climc host-delete:
the host and its storage links go, storages and storagecaches stay), POST /__reject-tokens (every token seen so far is
answered 403 from now on, as an expired one).
--zone NAME (repeatable; default zone1) and --network NAME=CIDR@WIRE[,gateway=IP]
[,range=START-END] (repeatable; the wire is created in the first zone; the range defaults to
the CIDR's hosts) seed the region. --fail-first N answers 500 to the first N
deliveries of each task id (the agent must retry). --state FILE keeps the region's records
across restarts of the fake. Writes its port to --port-file.
"""
import argparse
import hashlib
import ipaddress
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from keystone_tokens import Tokens  # noqa: E402 (next to this file)

TASK_PATH = re.compile(r"^/tasks/([A-Za-z0-9._-]{1,128})$")
ID = r"([A-Za-z0-9._-]{1,128})"
ROUTES = [
    ("GET", re.compile(r"^/networks$"), "network-list"),
    ("GET", re.compile(r"^/wires/" + ID + r"$"), "wire-get"),
    ("GET", re.compile(r"^/storagecaches$"), "storagecache-list"),
    ("POST", re.compile(r"^/storagecaches$"), "storagecache-create"),
    ("GET", re.compile(r"^/storages/" + ID + r"$"), "storage-get"),
    ("POST", re.compile(r"^/storages$"), "storage-create"),
    ("PUT", re.compile(r"^/storages/" + ID + r"$"), "storage-update"),
    ("GET", re.compile(r"^/hosts/" + ID + r"/storages/" + ID + r"$"), "hoststorage-get"),
    ("POST", re.compile(r"^/hosts/" + ID + r"/storages/" + ID + r"$"), "hoststorage-create"),
    ("GET", re.compile(r"^/hosts$"), "host-list"),
    ("POST", re.compile(r"^/zones/" + ID + r"/hosts$"), "host-create"),
    ("POST", re.compile(r"^/hosts$"), "host-create"),
    ("PUT", re.compile(r"^/hosts/" + ID + r"$"), "host-update"),
    ("POST", re.compile(r"^/hosts/" + ID + r"/add-netif$"), "add-netif"),
    ("POST", re.compile(r"^/hosts/" + ID + r"/online$"), "online"),
    ("POST", re.compile(r"^/hosts/" + ID + r"/offline$"), "offline"),
    ("POST", re.compile(r"^/hosts/" + ID + r"/ping$"), "ping"),
    ("POST", re.compile(r"^/servers/upload-status$"), "upload-status"),
    ("POST", re.compile(r"^/servers/" + ID + r"/status$"), "server-status"),
    ("POST", re.compile(r"^/servers/" + ID + r"/metadata$"), "server-metadata"),
    ("POST", TASK_PATH, "task"),
    ("PUT", re.compile(r"^/storagecaches/" + ID + r"/cachedimages/" + ID + r"$"), "cachedimage"),
    ("PUT", re.compile(r"^/servers/" + ID + r"$"), "server-update"),
]
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# What a host may report for a guest: the states SGuest.SetStatusFromHost knows (anything else
# becomes unknown there); hostagent's own crashed/stopping are not among them.
GUEST_STATUSES = {"running", "ready", "suspend", "unknown", "block_stream"}
# Fields of api.HostUploadGuestStatusInput (status push, status callback, upload-status).
STATUS_FIELDS = {"status": str, "power_states": str, "host_id": str, "block_jobs_count": int,
                 "reason": str}
QEMU_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
MAX_BODY = 1 << 20


# How long a token keystone accepted is trusted, as the real region caches validations.
VALID_CACHE_SECONDS = 30


def in_range(net, ip):
    lo, hi = ipaddress.ip_address(net["guest_ip_start"]), ipaddress.ip_address(net["guest_ip_end"])
    return ip.version == lo.version and lo <= ip <= hi


def is_int(v, minimum=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


STR, INT, BOOL, NUM, OBJ, LIST = "string", "integer", "boolean", "number", "object", "list"
TYPES = {STR: lambda v: isinstance(v, str), INT: lambda v: is_int(v, 0),
         BOOL: lambda v: isinstance(v, bool), NUM: is_num,
         OBJ: lambda v: isinstance(v, dict), LIST: lambda v: isinstance(v, list)}
# Field names and types of the region's inputs (pkg/apis/compute, CONTRACT.md 1.1 and 5 A).
FIELDS = {
    # api.HostCreateInput (the subset a KVM host agent sends)
    "host": {"generate_name": STR, "name": STR, "host_type": STR, "manager_uri": STR,
             "access_ip": STR, "access_mac": STR, "cpu_count": INT, "node_count": INT,
             "cpu_desc": STR, "cpu_mhz": INT, "cpu_architecture": STR,
             "kvm_cap_max_vcpu": INT, "mem_size": INT, "mem_reserved": INT,
             "page_size_kb": INT, "storage_size": INT, "storage_type": STR,
             "storage_driver": STR, "sys_info": OBJ, "sn": STR, "version": STR,
             "metadata": OBJ, "cpu_cache": STR, "cpu_microcode": STR, "hostname": STR},
    # api.HostAddNetifInput
    "netif": {"mac": STR, "vlan_id": INT, "wire": STR, "wire_id": STR, "ip_addr": STR,
              "interface": STR, "bridge": STR, "link_up": BOOL, "reserve": BOOL,
              "nic_type": STR, "mtu": INT, "index": INT, "require_designated_ip": BOOL},
    "storagecache": {"name": STR, "path": STR, "external_id": STR},
    "storage": {"name": STR, "capacity": INT, "actual_capacity_used": INT,
                "storage_type": STR, "medium_type": STR, "zone": STR, "zone_id": STR,
                "storagecache_id": STR, "hardware_info": OBJ},
    "hoststorage": {"mount_point": STR, "is_root_partition": BOOL},
    # api.SHostPingInput
    "ping": {"with_data": BOOL, "memory_used_mb": INT, "cpu_usage_percent": NUM,
             "root_partition_used_capacity_mb": INT, "storage_stats": LIST,
             "qga_running_guests": LIST},
    "storage_stat": {"storage_id": STR, "capacity_mb": INT, "actual_capacity_used_mb": INT},
}


def check_fields(obj, kind, what, problems, ignore_unknown=False):
    """Problems for unknown or mistyped fields; returns the unknown names."""
    unknown = []
    for k, v in obj.items():
        t = FIELDS[kind].get(k)
        if t is None:
            unknown.append(k)
            if not ignore_unknown:
                problems.append("%s.%s is not a field of the region's input" % (what, k))
        elif not TYPES[t](v):
            problems.append("%s.%s is not a %s: %r" % (what, k, t, v))
    return unknown


def check_host(h, problems, create):
    check_fields(h, "host", "host", problems)
    if not isinstance(h.get("access_mac"), str) or not MAC.match(h["access_mac"]):
        problems.append("host.access_mac is not a MAC address: %r" % h.get("access_mac"))
    uri = h.get("manager_uri")
    if not isinstance(uri, str) or not re.match(r"^https?://[^/]+:\d+$", uri):
        problems.append("host.manager_uri is not http(s)://host:port: %r" % uri)
    for k in ("access_ip", "cpu_desc", "version"):
        if not isinstance(h.get(k), str) or not h[k]:
            problems.append("host.%s is not a non-empty string" % k)
    for k in ("cpu_count", "node_count", "mem_size"):
        if not is_int(h.get(k), 1):
            problems.append("host.%s is not a positive integer" % k)
    # The region's KVM host driver and the scheduler know "hypervisor" only.
    if h.get("host_type") != "hypervisor":
        problems.append("host.host_type is %r, not 'hypervisor'" % h.get("host_type"))
    if h.get("cpu_architecture") not in ("x86_64", "aarch64", "riscv64"):
        problems.append("host.cpu_architecture is %r" % h.get("cpu_architecture"))
    if not isinstance(h.get("sys_info"), dict):
        problems.append("host.sys_info is not an object")
    if create and not (h.get("generate_name") or h.get("name")):
        problems.append("host create without generate_name")
    if not create:
        for k in ("generate_name", "name", "mem_reserved"):
            if k in h:
                problems.append("host update carries %s (undoes an admin's change)" % k)


def new_id():
    return str(uuid.uuid4())


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
                return self._answer(200, dict(srv.db, servers=srv.servers,
                                              cachedimages=srv.cachedimages,
                                              metadata=srv.metadata,
                                              outage=srv.outage_until > time.time()))
        if url.path == "/__reject-tokens" and self.command == "POST":
            with srv.lock:
                srv.rejected |= srv.seen_tokens
                n = len(srv.rejected)
            return self._answer(200, {"rejected": n})
        if url.path == "/__delete-host" and self.command == "POST":
            # As an admin's host-delete: the record and its storage links go; storages and
            # storagecaches stay (the real region keeps both).
            hid = urllib.parse.parse_qs(url.query).get("id", [""])[0]
            with srv.lock:
                gone = srv.db["hosts"].pop(hid, None) is not None
                for k in [k for k, v in srv.db["hoststorages"].items() if v["host_id"] == hid]:
                    del srv.db["hoststorages"][k]
                srv.save()
            return self._answer(200 if gone else 404, {})
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
               "host_id": None, "sid": None, "body": None, "token_valid": False,
               "ignored": []}
        self.rec, self.note = rec, None
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
        elif kind in ("host-update", "add-netif", "online", "offline", "ping",
                      "hoststorage-get", "hoststorage-create"):
            rec["host_id"] = m.group(1)
        elif kind in ("server-status", "server-update", "server-metadata"):
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
        token = self.headers.get("X-Auth-Token") or ""
        sha = hashlib.sha256(token.encode()).hexdigest()[:16]
        rec["token_sha"] = sha if token else None
        with srv.lock:
            rejected = sha in srv.rejected
        valid = None if rejected else srv.tokens.valid(token)
        keystone_down = valid is None and not rejected
        rec["token_valid"] = bool(valid)
        if keystone_down:
            self.note = "keystone did not answer the token validation"
        elif rec["token_valid"]:
            with srv.lock:
                srv.seen_tokens.add(sha)
        elif rejected:
            rec["token_rejected"] = True  # expected: the agent must renew it, not a problem
        else:
            problems.append("X-Auth-Token is missing or not a valid keystone token")

        status, reply = 200, {}
        if outage or keystone_down:
            status = 503
        elif not rec["token_valid"]:
            # The real region treats a bad token as anonymous: 403 ForbiddenError, not 401.
            status = 403
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
            classes = {400: "InputParameterError", 403: "ForbiddenError",
                       404: "ResourceNotFoundError", 409: "DuplicateResourceError"}
            self._answer(status, {"code": status,
                                  "class": classes.get(status, "InternalServerError"),
                                  "details": "; ".join(problems) or self.note or
                                  "injected failure"})

    def _wrapped(self, body, key, problems):
        inner = body.get(key) if body else None
        if not isinstance(inner, dict):
            problems.append("body is not wrapped in %r" % key)
            return None
        return inner

    def _check_status(self, s, where, problems, need_host=True):
        """A guest status as api.HostUploadGuestStatusInput: status, power_states, host_id (a
        host this region knows), block_jobs_count, reason. Unknown fields are ignored by the
        real region; they are listed in the record's "ignored"."""
        for k, v in s.items():
            t = STATUS_FIELDS.get(k)
            if t is None:
                self.rec["ignored"].append("%s.%s" % (where, k))
            elif not isinstance(v, t) or isinstance(v, bool):
                problems.append("%s.%s is %r, not a %s" % (where, k, v, t.__name__))
        if s.get("status") not in GUEST_STATUSES:
            problems.append("%s.status is %r, not a Cloudpods guest status" %
                            (where, s.get("status")))
        if s.get("power_states") not in ("on", "off"):
            problems.append("%s.power_states is %r" % (where, s.get("power_states")))
        if need_host or "host_id" in s:
            with self.server.lock:
                known = s.get("host_id") in self.server.db["hosts"]
            if not known:
                problems.append("%s.host_id is %r, not a host of this region" %
                                (where, s.get("host_id")))
        if isinstance(s.get("block_jobs_count"), int) and s["block_jobs_count"] < 0:
            problems.append("%s.block_jobs_count is negative" % where)

    def _route(self, kind, m, url, body, problems):
        srv = self.server
        if kind == "task":
            if "error" in body:
                problems.append("callback carries an 'error' object (not a Cloudpods body)")
            # What GuestDeployTask's callback saves (SaveDeployInfo: os_name, login_account,
            # login_key, ... metadata): strings, and telegraf_deployed a bool.
            for k in ("os", "account", "key", "distro", "version", "arch", "language",
                      "current_version"):
                if k in body and not isinstance(body[k], str):
                    problems.append("deploy info %s is not a string: %r" % (k, body[k]))
            if "telegraf_deployed" in body and not isinstance(body["telegraf_deployed"], bool):
                problems.append("telegraf_deployed is not a bool")
            if "__status__" in body:
                if body["__status__"] != "error":
                    problems.append("__status__ is %r" % body["__status__"])
                if not isinstance(body.get("__reason__"), str) or not body["__reason__"]:
                    problems.append("__status__ without a __reason__ string")
            elif "status" in body and "power_states" in body:
                # The callback of GET /servers/<sid>/status (GuestSyncstatusTask,
                # GuestDetachDiskTask.OnGetGuestStatus): notfound is a status there.
                st = dict(body)
                if st.get("status") == "notfound":
                    st["status"] = "unknown"
                self._check_status(st, "task", problems)
            if problems:
                return 400, {}
            with srv.lock:
                n = srv.deliveries.get(m.group(1), 0) + 1
                srv.deliveries[m.group(1)] = n
            if n <= srv.fail_first:
                return 500, {}
            return 200, {"task": {"id": m.group(1), "stage": "OnCallback"}}
        if kind in REGISTRATION_KINDS:
            with srv.lock:
                r = self._registration(kind, m, url, body, problems)
                srv.save()
            return r
        if kind == "server-status":
            s = self._wrapped(body, "server", problems)
            if s is not None:
                self._check_status(s, "server", problems)
            if problems:
                return 400, {}
            with srv.lock:
                srv.servers[m.group(1)] = {k: s[k] for k in STATUS_FIELDS if k in s}
            return 200, {"server": {"id": m.group(1), "status": s["status"]}}
        if kind == "upload-status":
            # SGuestManager.PerformUploadStatus: {"servers": {"guests": {<sid>: status}}}.
            s = self._wrapped(body, "servers", problems)
            guests = s.get("guests") if s is not None else None
            if s is not None and not isinstance(guests, dict):
                problems.append("servers.guests is not an object")
            for sid, g in (guests or {}).items():
                if not re.match("^" + ID + "$", sid):
                    problems.append("servers.guests key %r is not a guest id" % sid)
                elif not isinstance(g, dict):
                    problems.append("servers.guests.%s is not an object" % sid)
                else:
                    self._check_status(g, "servers.guests." + sid, problems)
            for k in (s or {}):
                if k != "guests":
                    self.rec["ignored"].append("servers." + k)
            if problems:
                return 400, {}
            with srv.lock:
                for sid, g in guests.items():
                    srv.servers[sid] = {k: g[k] for k in STATUS_FIELDS if k in g}
            return 200, {}
        if kind == "server-metadata":
            # PerformMetadata: {"server": {key: value}}, values strings or numbers; the
            # __qemu_version, __vnc_port, __vnc_password keys as GetGuestVncInfo reads them.
            md = self._wrapped(body, "server", problems)
            for k, v in (md or {}).items():
                if not isinstance(v, (str, int)) or isinstance(v, bool):
                    problems.append("server.%s is %r, not a string or number" % (k, v))
            if md is not None:
                if not md:
                    problems.append("server: no metadata")
                qv = md.get("__qemu_version")
                if qv is not None and not (isinstance(qv, str) and QEMU_VERSION.match(qv)):
                    problems.append("server.__qemu_version is %r, not x.y.z" % qv)
                vp = md.get("__vnc_port")
                if vp is not None and not (is_int(vp, 1) and vp <= 65535):
                    problems.append("server.__vnc_port is %r" % vp)
                if "__vnc_password" in md and not isinstance(md["__vnc_password"], str):
                    problems.append("server.__vnc_password is not a string")
            if problems:
                return 400, {}
            with srv.lock:
                srv.metadata.setdefault(m.group(1), {}).update(md)
            return 200, md
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
        problems.append("unhandled kind " + kind)
        return 500, {}

    # ---- registration: zones, wires, networks, hosts, netifs, storages (lock held) ----

    def _query(self, url):
        return {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}

    def _registration(self, kind, m, url, body, problems):
        db = self.server.db
        q = self._query(url)
        if kind == "network-list":
            if q.get("scope") != "system" or q.get("is_classic") != "true":
                problems.append("GET /networks without is_classic=true&scope=system")
            try:
                ip = ipaddress.ip_address(q.get("ip", ""))
            except ValueError:
                problems.append("GET /networks: ip %r is not an address" % q.get("ip"))
                return 400, {}
            if problems:
                return 400, {}
            found = [n for n in db["networks"].values() if in_range(n, ip)]
            return 200, {"networks": found, "total": len(found)}
        if kind == "wire-get":
            w = self._find(db["wires"], m.group(1))
            if not w:
                self.note = "wire %s not found" % m.group(1)
                return 404, {}
            return 200, {"wire": w}
        if kind == "host-list":
            if q.get("scope") != "system":
                problems.append("GET /hosts without scope=system")
            mac = q.get("any_mac")
            if not mac:
                problems.append("GET /hosts without any_mac")
            if problems:
                return 400, {}
            found = [h for h in db["hosts"].values()
                     if h.get("access_mac") == mac or
                     any(n.get("mac") == mac for n in h.get("netifs", []))]
            return 200, {"hosts": found, "total": len(found)}
        if kind == "storagecache-list":
            found = [c for c in db["storagecaches"].values()
                     if ("external_id" not in q or c["external_id"] == q["external_id"]) and
                     ("path" not in q or c["path"] == q["path"])]
            return 200, {"storagecaches": found, "total": len(found)}
        if kind == "storage-get":
            st = self._find(db["storages"], m.group(1))
            if not st:
                self.note = "storage %s not found" % m.group(1)  # a lookup: no problem
                return 404, {}
            return 200, {"storage": st}
        if kind == "hoststorage-get":
            hs = db["hoststorages"].get(m.group(1) + "/" + m.group(2))
            if not hs:
                self.note = "host %s has no storage %s" % (m.group(1), m.group(2))
                return 404, {}
            return 200, {"hoststorage": hs}
        if kind == "storagecache-create":
            c = self._wrapped(body, "storagecache", problems)
            if c is None:
                return 400, {}
            check_fields(c, "storagecache", "storagecache", problems)
            for k in ("name", "path", "external_id"):
                if not c.get(k):
                    problems.append("storagecache.%s missing" % k)
            if problems:
                return 400, {}
            if any(x["name"] == c["name"] for x in db["storagecaches"].values()):
                problems.append("storagecache name %s exists" % c["name"])
                return 409, {}
            cid = new_id()
            db["storagecaches"][cid] = dict(c, id=cid)
            return 200, {"storagecache": db["storagecaches"][cid]}
        if kind in ("storage-create", "storage-update"):
            st = self._wrapped(body, "storage", problems)
            if st is None:
                return 400, {}
            check_fields(st, "storage", "storage", problems)
            if "storage_type" in st and st["storage_type"] != "local":
                problems.append("storage.storage_type is %r" % st["storage_type"])
            if "medium_type" in st and st["medium_type"] not in ("ssd", "rotate"):
                problems.append("storage.medium_type is %r" % st["medium_type"])
            if "storagecache_id" in st and st["storagecache_id"] not in db["storagecaches"]:
                problems.append("storagecache %s not found" % st["storagecache_id"])
            if problems:
                return 400, {}
            if kind == "storage-create":
                for k in ("name", "capacity", "storage_type", "medium_type",
                          "storagecache_id"):
                    if k not in st:
                        problems.append("storage.%s missing" % k)
                zone = st.get("zone") or st.get("zone_id")
                if problems:
                    return 400, {}
                if not zone or not self._find(db["zones"], zone):
                    problems.append("zone %s not found" % zone)
                    return 404, {}
                if any(x["name"] == st["name"] for x in db["storages"].values()):
                    problems.append("storage name %s exists" % st["name"])
                    return 409, {}
                sid = new_id()
                db["storages"][sid] = dict(st, id=sid, zone_id=self._find(db["zones"], zone)["id"],
                                           status="offline", enabled=True)
            else:
                rec = self._find(db["storages"], m.group(1))
                if not rec:
                    problems.append("storage %s not found" % m.group(1))
                    return 404, {}
                sid = rec["id"]
                rec.update(st)
            return 200, {"storage": db["storages"][sid]}
        if kind == "hoststorage-create":
            hid, sid = m.group(1), m.group(2)
            hs = self._wrapped(body, "hoststorage", problems)
            if hs is None:
                return 400, {}
            check_fields(hs, "hoststorage", "hoststorage", problems)
            if not hs.get("mount_point"):
                problems.append("hoststorage.mount_point missing")
            if problems:
                return 400, {}
            host, st = db["hosts"].get(hid), db["storages"].get(sid)
            if not host or not st:
                problems.append("no host %s or storage %s" % (hid, sid))
                return 404, {}
            if host.get("host_type") != "hypervisor":
                problems.append("host %s has no KVM host driver" % hid)
                return 400, {}
            key = hid + "/" + sid
            if key in db["hoststorages"]:
                problems.append("storage %s already attached to host %s" % (sid, hid))
                return 409, {}
            db["hoststorages"][key] = dict(hs, host_id=hid, storage_id=sid)
            return 200, {"hoststorage": db["hoststorages"][key]}

        h = self._wrapped(body, "host", problems)
        if h is None:
            return 400, {}
        if kind in ("host-create", "host-update"):
            check_host(h, problems, kind == "host-create")
            if problems:
                return 400, {}
            if kind == "host-create":
                zone = None
                if m.groups():
                    zone = self._find(db["zones"], m.group(1))
                    if not zone:
                        problems.append("zone %s not found" % m.group(1))
                        return 404, {}
                if any(x.get("access_mac") == h["access_mac"] for x in db["hosts"].values()):
                    problems.append("a host with access_mac %s exists" % h["access_mac"])
                    return 409, {}
                hid = new_id()
                h = dict(h)  # the request body is recorded as it came
                name = h.pop("generate_name", None) or h.get("name")
                if any(x.get("name") == name for x in db["hosts"].values()):
                    name += "-" + hid[:4]
                db["hosts"][hid] = dict(h, id=hid, name=name, host_status="offline",
                                        status="init", enabled=False, netifs=[],
                                        zone_id=zone["id"] if zone else None)
            else:
                hid = m.group(1)
                if hid not in db["hosts"]:
                    problems.append("no host " + hid)
                    return 404, {}
                db["hosts"][hid].update(h)
            return 200, {"host": db["hosts"][hid]}
        hid = m.group(1)
        if hid not in db["hosts"]:
            problems.append("no host " + hid)
            return 404, {}
        host = db["hosts"][hid]
        if kind == "add-netif":
            # The real region ignores unknown fields (200, NIC stored without them).
            self.rec["ignored"] = check_fields(h, "netif", "host", problems,
                                               ignore_unknown=True)
            if not isinstance(h.get("mac"), str) or not MAC.match(h["mac"]):
                problems.append("host.mac is not a MAC address: %r" % h.get("mac"))
            if problems:
                return 400, {}
            wire = None
            if h.get("wire") or h.get("wire_id"):
                wire = self._find(db["wires"], h.get("wire") or h.get("wire_id"))
                if not wire:
                    problems.append("wire %s not found" % (h.get("wire") or h.get("wire_id")))
                    return 404, {}
            if h.get("ip_addr"):
                ip = ipaddress.ip_address(h["ip_addr"])
                # A network holds an IP only within guest_ip_start..guest_ip_end.
                nets = [n for n in db["networks"].values() if in_range(n, ip)]
                if not nets:
                    problems.append("IP %s not attach to any wire" % h["ip_addr"])
                    return 400, {}
                if wire and not any(n["wire_id"] == wire["id"] for n in nets):
                    problems.append("IP %s not attach to wire %s" % (h["ip_addr"], wire["id"]))
                    return 400, {}
                if wire:
                    nets = [n for n in nets if n["wire_id"] == wire["id"]]
                wire = db["wires"][nets[0]["wire_id"]]
                # EnableNetif keeps ip_addr only if a network with a gateway holds it;
                # otherwise the real region drops it and gives the NIC (and an admin NIC's
                # host, access_ip) an address of some other network on the wire, or with
                # require_designated_ip refuses.
                if not any(n.get("guest_gateway") for n in nets):
                    if h.get("require_designated_ip"):
                        problems.append("Cannot allocate IP %s, not reachable" % h["ip_addr"])
                    else:
                        problems.append("IP %s is in no network with a gateway: the real "
                                        "region would give the NIC another address"
                                        % h["ip_addr"])
                    return 400, {}
            nic = {k: h[k] for k in FIELDS["netif"] if k in h and k not in ("wire", "wire_id")}
            nic["wire_id"] = wire["id"] if wire else None
            nic["wire"] = wire["name"] if wire else None
            nic["link_up"] = bool(h.get("link_up")) and bool(h.get("interface"))
            host["netifs"] = [n for n in host["netifs"] if n["mac"] != h["mac"]] + [nic]
        elif kind == "online":
            if host["host_status"] != "online":
                # PerformOnline -> SyncStatusWithHosts: attached storages come online.
                for hs in db["hoststorages"].values():
                    if hs["host_id"] == hid and hs["storage_id"] in db["storages"]:
                        db["storages"][hs["storage_id"]]["status"] = "online"
            host["host_status"], host["status"] = "online", "running"
        elif kind == "offline":
            host["host_status"] = "offline"
        elif kind == "ping":
            check_fields(h, "ping", "host", problems)
            cpu = h.get("cpu_usage_percent")
            if cpu is not None and is_num(cpu) and not 0 <= cpu <= 100:
                problems.append("host.cpu_usage_percent is %r" % cpu)
            for e in h.get("storage_stats") or []:
                if not isinstance(e, dict):
                    problems.append("host.storage_stats entry is not an object")
                    continue
                check_fields(e, "storage_stat", "host.storage_stats[]", problems)
                if e.get("storage_id") not in db["storages"]:
                    problems.append("storage_stats for unknown storage %r" % e.get("storage_id"))
            for g in h.get("qga_running_guests") or []:
                if not isinstance(g, str):
                    problems.append("host.qga_running_guests entry is not a string")
            if problems:
                return 400, {}
            for e in h.get("storage_stats") or []:
                st = db["storages"][e["storage_id"]]
                st["capacity"] = e.get("capacity_mb", st.get("capacity"))
                st["actual_capacity_used"] = e.get("actual_capacity_used_mb",
                                                   st.get("actual_capacity_used"))
            host["last_ping"] = time.time()
        return 200, {"host": host}

    def _find(self, table, key):
        if key in table:
            return table[key]
        return next((x for x in table.values() if x.get("name") == key), None)

    do_POST = do_GET = do_PUT = do_DELETE = _handle


REGISTRATION_KINDS = {"network-list", "wire-get", "host-list", "host-create", "host-update",
                      "add-netif", "online", "offline", "ping", "storagecache-list",
                      "storagecache-create", "storage-get", "storage-create",
                      "storage-update", "hoststorage-get", "hoststorage-create"}
TABLES = ("zones", "wires", "networks", "hosts", "storagecaches", "storages", "hoststorages")


class Server(ThreadingHTTPServer):
    def save(self):
        if self.state_file:
            tmp = self.state_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.db, f)
            os.rename(tmp, self.state_file)

    def seed(self, zones, networks):
        db = self.db
        for z in zones or ["zone1"]:
            if not any(x["name"] == z for x in db["zones"].values()):
                zid = new_id()
                db["zones"][zid] = {"id": zid, "name": z, "status": "enable"}
        first = next(x for x in db["zones"].values() if x["name"] == (zones or ["zone1"])[0])
        for spec in networks or []:
            name, rest = spec.split("=", 1)
            rest, *opts = rest.split(",")
            cidr, wire = rest.split("@", 1)
            net = ipaddress.ip_network(cidr)
            opts = dict(o.split("=", 1) for o in opts)
            start, _, end = opts.get("range", "").partition("-")
            hosts = list(net.hosts())
            extra = {"guest_ip_start": start or str(hosts[0]),
                     "guest_ip_end": end or str(hosts[-1]),
                     "guest_gateway": opts.get("gateway")}
            w = next((x for x in db["wires"].values() if x["name"] == wire), None)
            if not w:
                wid = new_id()
                w = db["wires"][wid] = {"id": wid, "name": wire, "zone_id": first["id"]}
            if not any(x["name"] == name for x in db["networks"].values()):
                nid = new_id()
                db["networks"][nid] = dict(extra, id=nid, name=name, cidr=cidr,
                                           wire_id=w["id"], is_classic=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--record", required=True)
    ap.add_argument("--keystone", required=True, help="keystone v3 URL")
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--state")
    ap.add_argument("--zone", action="append")
    ap.add_argument("--network", action="append", help="NAME=CIDR@WIRE")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.tokens, srv.record, srv.fail_first = Tokens(a.keystone, VALID_CACHE_SECONDS), a.record, a.fail_first
    srv.lock, srv.deliveries = threading.Lock(), {}
    srv.db, srv.servers, srv.outage_until, srv.state_file = {t: {} for t in TABLES}, {}, 0, a.state
    srv.seen_tokens, srv.rejected = set(), set()
    srv.cachedimages = {}
    srv.metadata = {}
    if a.state and os.path.exists(a.state):
        with open(a.state) as f:
            srv.db.update(json.load(f))
    srv.seed(a.zone, a.network)
    open(a.record, "a").close()
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
