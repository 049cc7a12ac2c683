#!/bin/bash
# M3 of the security review: a flood of bogus tokens against a slow Keystone. Each distinct
# refused token costs one validation per few seconds (negative cache), validations run on a
# pool of their own with a cap in flight, and the heartbeat to the region is not delayed by
# more than one interval. Real Keystone behind a proxy that delays validations by 300 ms;
# the checking fake region records the heartbeats.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/keystone-lib.sh"

region_start
PX_PORT=$(ks_free_port)

# The slow Keystone: validations (GET .../auth/tokens) wait 300 ms; everything is forwarded.
python3 - "$PX_PORT" "$KS_URL" "$T/proxy-counts.json" >"$T/proxy.log" 2>&1 <<'PY' &
import http.server, json, sys, threading, time, urllib.request, urllib.error
port, upstream, counts_file = int(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3]
base = upstream.rsplit("/v3", 1)[0]
counts, lock = {}, threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def fwd(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        if self.command == "GET" and "/auth/tokens" in self.path:
            subj = self.headers.get("X-Subject-Token", "")
            with lock:
                counts[subj] = counts.get(subj, 0) + 1
                json.dump({"total": sum(counts.values()), "flood-same": counts.get("flood-same-token-0123456789", 0)},
                          open(counts_file + ".tmp", "w"))
                import os; os.replace(counts_file + ".tmp", counts_file)
            time.sleep(0.3)
        req = urllib.request.Request(base + self.path, data=body, method=self.command)
        for k, v in self.headers.items():
            if k.lower() not in ("host", "content-length", "connection"):
                req.add_header(k, v)
        try:
            r = urllib.request.urlopen(req, timeout=10)
            code, hdrs, data = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            code, hdrs, data = e.code, e.headers, e.read()
        self.send_response(code)
        for k, v in hdrs.items():
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = do_HEAD = do_DELETE = fwd
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
PX_PID=$!
on_exit "kill $PX_PID"
wait_for 20 curl -sf -o /dev/null "http://127.0.0.1:$PX_PORT/v3" || hard "keystone proxy did not start"
KS_URL=http://127.0.0.1:$PX_PORT/v3

region_conf "$T/host.conf" "$API_PORT" <<YAML
ping_region_interval: 5
libvirt_uri: test:///default
api_rate_limit: 1000000
api_max_connections: 1024
api_max_connections_per_ip: 64
YAML
region_agent_start --log-level info # the default level
pings() { python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["kind"] == "ping" and json.loads(l)["status"] == 200))' "$FR_RECORD"; }
wait_for 60 sh -c "[ \$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)[\"kind\"] == \"ping\"))' $FR_RECORD) -ge 1 ]" ||
	fail "the agent never sent a heartbeat"
op_token
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Auth-Token: $TOKEN" "$API/servers")" 200 "operator token before the flood"

python3 - "$API_PORT" "$FR_RECORD" "$TOKEN" <<'PY' || fail "flood"
import json, socket, sys, threading, time, uuid
port, record, good = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def get(token, src):
    s = socket.socket(); s.bind((src, 0)); s.settimeout(15)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(("GET /servers HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Auth-Token: %s\r\n\r\n" % token).encode())
        d = s.recv(64)
        return int(d.split(b" ", 2)[1]) if d else 0
    except OSError:
        return 0
    finally:
        s.close()
stop = False
sent = [0]
def flood(i):
    while not stop:
        get("bogus-" + uuid.uuid4().hex, "127.0.4.%d" % (1 + i % 200))
        sent[0] += 1
def same(i):
    while not stop:
        get("flood-same-token-0123456789", "127.0.5.%d" % (1 + i))
        sent[0] += 1
threads = [threading.Thread(target=flood, args=(i,)) for i in range(24)]
threads += [threading.Thread(target=same, args=(i,)) for i in range(4)]
def npings():
    return [l for l in (json.loads(x) for x in open(record)) if l["kind"] == "ping"]
start_pings = len(npings())
for t in threads: t.start()
t0 = time.time(); arrivals = []; last = start_pings; good_times = []
while time.time() - t0 < 30:
    n = len(npings())
    if n > last:
        arrivals.append(time.time()); last = n
    if int(time.time() - t0) % 4 == 0 and len(good_times) < int((time.time() - t0) / 4) + 1:
        g0 = time.time(); code = get(good, "127.0.0.1"); good_times.append((code, time.time() - g0))
    time.sleep(0.1)
t_end = time.time()
stop = True
for t in threads: t.join()
gaps = [b - a for a, b in zip([t0] + arrivals, arrivals + [t_end])]
print("flood: %d requests; heartbeats at %s; gaps %s; cached operator token %s" % (
    sent[0], ["%.1f" % (a - t0) for a in arrivals], ["%.1f" % g for g in gaps],
    ["%d/%.2fs" % g for g in good_times]))
assert len(arrivals) >= 3, "only %d heartbeats in 30 s under the flood" % len(arrivals)
# interval 5 s +-10 %, "delayed by at most one interval": no gap above 11 s
assert max(gaps) <= 11.0, "heartbeat gap %.1f s under the flood" % max(gaps)
assert all(c == 200 and d < 1.0 for c, d in good_times), good_times
PY
ok "heartbeats on time and a cached token served under a bogus-token flood"
counts=$(cat "$T/proxy-counts.json")
same=$(echo "$counts" | json 'j["flood-same"]')
# 30 s of the same refused token from 4 clients: one validation per 5 s window at most
[ "$same" -ge 1 ] && [ "$same" -le 8 ] || fail "one refused token was validated $same times in 30 s"
ok "a refused token is validated once per window ($same times in 30 s, $(echo "$counts" | json 'j["total"]') validations in all)"
kill -0 "$AGENT_PID" || fail "agent died"
