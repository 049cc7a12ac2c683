#!/usr/bin/env python3
"""A fake Kubernetes API server for tests/integration/reconciler-apply.sh (stdlib only).

Serves the resources ocreconciler writes (v1 secrets, configmaps, persistentvolumeclaims,
services; apps/v1 deployments, daemonsets; batch/v1 cronjobs) under
/api/v1/namespaces/NS/PLURAL[/NAME] and /apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME].

Like the real server it checks what it receives:
- a bearer token (401 otherwise);
- server-side apply: PATCH with Content-Type application/apply-patch+yaml (415 otherwise),
  fieldManager in the query (400 otherwise), a body whose apiVersion, kind, metadata.name and
  metadata.namespace agree with the URL (400 otherwise);
- and what this project requires of every object it manages (422 otherwise): the label
  app.kubernetes.io/managed-by=ocreconciler and a controller ownerReference to an
  OnecloudCluster with apiVersion, kind, name and uid.
Apply bodies must be JSON (JSON is YAML; ocreconciler sends JSON). An apply replaces the
stored object: the real server merges by field manager, which for a single manager sending
whole objects ends the same. Stored objects get a uid,
resourceVersion, generation, and a few server-side defaults, so a client comparing whole
objects would see drift where there is none.

GET one object, GET a collection with labelSelector (equality terms joined by commas),
DELETE. Every API request is appended to the JSONL file --log as
{"method","path","query","content_type","status"}.

Control endpoints (not logged, no token):
  GET  /_control/objects            every stored object
  POST /_control/mutate             {"path": OBJECT_PATH, "set": {"spec.replicas": 5}}
  POST /_control/fail               {"method": "PATCH", "path": OBJECT_PATH, "status": 500,
                                     "message": "..."}: answer that request with an error
  POST /_control/reset-failures
"""
import argparse
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

RESOURCES = {
    ("v1", "secrets"): "Secret",
    ("v1", "configmaps"): "ConfigMap",
    ("v1", "persistentvolumeclaims"): "PersistentVolumeClaim",
    ("v1", "services"): "Service",
    ("apps/v1", "deployments"): "Deployment",
    ("apps/v1", "daemonsets"): "DaemonSet",
    ("batch/v1", "cronjobs"): "CronJob",
}
PATH_RE = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[a-z0-9.]+)/(?P<version>v[0-9a-z]+))"
    r"/namespaces/(?P<ns>[a-z0-9-]+)/(?P<plural>[a-z]+)(?:/(?P<name>[a-z0-9.-]+))?$"
)


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.objects = {}  # path -> object
        self.failures = []  # {"method", "path", "status", "message"}
        self.rv = 1


def status_body(code, message, reason="Invalid"):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": message, "reason": reason, "code": code}


def default_object(obj):
    """What a real API server adds on its own."""
    kind = obj["kind"]
    spec = obj.get("spec")
    if kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("revisionHistoryLimit", 10)
        pod = spec.get("template", {}).get("spec", {})
        pod.setdefault("restartPolicy", "Always")
        pod.setdefault("dnsPolicy", "ClusterFirst")
        for c in pod.get("containers", []):
            c.setdefault("terminationMessagePath", "/dev/termination-log")
        obj["status"] = {"replicas": spec.get("replicas", 1)}
    if kind == "Service" and isinstance(spec, dict):
        spec.setdefault("clusterIP", "10.96.0.17")
        spec.setdefault("sessionAffinity", "None")
    if kind == "PersistentVolumeClaim" and isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
        obj["status"] = {"phase": "Pending"}


def selector_matches(sel, labels):
    for term in filter(None, sel.split(",")):
        if "=" not in term:
            return False
        k, v = term.split("=", 1)
        if labels.get(k) != v:
            return False
    return True


def set_path(obj, dotted, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        obj = obj.setdefault(k, {})
    obj[keys[-1]] = value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body):
        # An API request is logged before its answer is sent: a client that has its answer
        # finds the request in the log (a test counting the requests of one run must not see
        # the last request of the run before it).
        if getattr(self, "api_url", None) is not None:
            self.record(self.api_url, code)
            self.api_url = None
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return code

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def record(self, url, status):
        entry = {"method": self.command, "path": url.path, "query": url.query,
                 "content_type": self.headers.get("Content-Type"), "status": status}
        with self.server.log_lock, open(self.server.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def handle_any(self):
        url = urlsplit(self.path)
        if url.path.startswith("/_control/"):
            return self.control(url)
        body = self.read_body()
        self.api_url = url
        self.api(url, body)

    do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = handle_any

    def control(self, url):
        st = self.server.store
        body = self.read_body()
        req = json.loads(body) if body else {}
        with st.lock:
            if url.path == "/_control/objects":
                return self.reply(200, list(st.objects.values()))
            if url.path == "/_control/mutate":
                obj = st.objects.get(req["path"])
                if obj is None:
                    return self.reply(404, status_body(404, "no such object", "NotFound"))
                for k, v in req["set"].items():
                    set_path(obj, k, v)
                st.rv += 1
                obj["metadata"]["resourceVersion"] = str(st.rv)
                return self.reply(200, obj)
            if url.path == "/_control/fail":
                st.failures.append(req)
                return self.reply(200, {})
            if url.path == "/_control/reset-failures":
                st.failures.clear()
                return self.reply(200, {})
        return self.reply(404, {})

    def api(self, url, body):
        st = self.server.store
        if self.headers.get("Authorization") != "Bearer " + self.server.token:
            return self.reply(401, status_body(401, "Unauthorized", "Unauthorized"))
        m = PATH_RE.match(url.path)
        if not m:
            return self.reply(404, status_body(404, "the server could not find the requested resource", "NotFound"))
        api_version = m["core"] or f"{m['group']}/{m['version']}"
        kind = RESOURCES.get((api_version, m["plural"]))
        if not kind:
            return self.reply(404, status_body(404, f"no resource {api_version} {m['plural']}", "NotFound"))
        ns, name = m["ns"], m["name"]
        q = parse_qs(url.query)
        with st.lock:
            for f in st.failures:
                if f.get("method") == self.command and f.get("path") == url.path:
                    return self.reply(f["status"], status_body(f["status"], f.get("message", "injected failure"), "InternalError"))
            if self.command == "GET" and name:
                obj = st.objects.get(url.path)
                if obj is None:
                    return self.reply(404, status_body(404, f'{m["plural"]} "{name}" not found', "NotFound"))
                return self.reply(200, obj)
            if self.command == "GET":
                sel = q.get("labelSelector", [""])[0]
                prefix = url.path + "/"
                items = [o for p, o in sorted(st.objects.items())
                         if p.startswith(prefix) and "/" not in p[len(prefix):]
                         and selector_matches(sel, o["metadata"].get("labels", {}))]
                return self.reply(200, {"apiVersion": api_version, "kind": kind + "List",
                                        "metadata": {"resourceVersion": str(st.rv)}, "items": items})
            if self.command == "DELETE" and name:
                obj = st.objects.pop(url.path, None)
                if obj is None:
                    return self.reply(404, status_body(404, f'{m["plural"]} "{name}" not found', "NotFound"))
                return self.reply(200, obj)
            if self.command == "PATCH" and name:
                return self.apply(url, q, body, api_version, kind, ns, name)
        return self.reply(405, status_body(405, f"{self.command} not allowed here", "MethodNotAllowed"))

    def apply(self, url, q, body, api_version, kind, ns, name):
        st = self.server.store
        ct = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ct != "application/apply-patch+yaml":
            return self.reply(415, status_body(415, f"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ct!r})", "UnsupportedMediaType"))
        if not q.get("fieldManager", [""])[0]:
            return self.reply(400, status_body(400, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch", "BadRequest"))
        try:
            obj = json.loads(body)
        except ValueError as e:
            return self.reply(400, status_body(400, f"error decoding YAML (this fake reads JSON only): {e}", "BadRequest"))
        if not isinstance(obj, dict):
            return self.reply(400, status_body(400, "body is not an object", "BadRequest"))
        meta = obj.get("metadata") or {}
        for field, got, want in (("apiVersion", obj.get("apiVersion"), api_version),
                                 ("kind", obj.get("kind"), kind),
                                 ("metadata.name", meta.get("name"), name)):
            if got != want:
                return self.reply(400, status_body(400, f"{field} {got!r} does not match the URL ({want!r})", "BadRequest"))
        if meta.get("namespace", ns) != ns:
            return self.reply(400, status_body(400, f"the namespace of the object ({meta.get('namespace')!r}) does not match the namespace on the request ({ns!r})", "BadRequest"))
        labels = meta.get("labels") or {}
        if labels.get("app.kubernetes.io/managed-by") != "ocreconciler":
            return self.reply(422, status_body(422, f"{kind} {name}: missing label app.kubernetes.io/managed-by=ocreconciler"))
        refs = [r for r in meta.get("ownerReferences") or []
                if r.get("apiVersion") == "onecloud.yunion.io/v1alpha1" and r.get("kind") == "OnecloudCluster"
                and r.get("name") and r.get("uid") and r.get("controller") is True]
        if len(refs) != 1:
            return self.reply(422, status_body(422, f"{kind} {name}: needs one controller ownerReference to an OnecloudCluster"))
        old = st.objects.get(url.path)
        st.rv += 1
        obj.setdefault("metadata", {})["namespace"] = ns
        obj["metadata"]["resourceVersion"] = str(st.rv)
        obj["metadata"]["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        obj["metadata"]["generation"] = old["metadata"]["generation"] + 1 if old else 1
        obj["metadata"]["managedFields"] = [{"manager": q["fieldManager"][0], "operation": "Apply"}]
        default_object(obj)
        st.objects[url.path] = obj
        return self.reply(200 if old else 201, obj)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.store = Store()
    srv.token = a.token
    srv.log_path = a.log
    srv.log_lock = threading.Lock()
    open(a.log, "w").close()
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
