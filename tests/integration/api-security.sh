#!/bin/bash
# Security review findings on the API's transport and limits (../shared/reviews/security.md):
# M5 TLS versions, key exchange and ciphers; TLS pair reloaded on SIGHUP and on file change
# (L6: SIGHUP does not stop the agent); plain HTTP on a non-loopback address warns; L8 token
# and key files readable by others refused; L1 token_cache_seconds capped; M2 slowloris: an
# absolute request deadline, a per-client connection limit, probes answered while the slots
# are held; L5 malformed-connection log lines rate limited.
. "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || hard "openssl missing"

# must_refuse NAME MESSAGE ARGS...: the agent exits non-zero at startup, saying MESSAGE.
must_refuse() {
	local name=$1 msg=$2; shift 2
	local d=$T/$name
	mkdir -p "$d/state"
	timeout 20 "$HOSTAGENT" --state-dir "$d/state" --servers-path "$d/servers" --local-image-path "$d/disks" \
		--admin-socket "$d/run/admin.sock" --listen-address 127.0.0.1 --port 0 \
		--libvirt-uri test:///default "$@" >"$d/agent.log" 2>&1 && fail "$name: agent started"
	grep -q -- "$msg" "$d/agent.log" || { cat "$d/agent.log" >&2; fail "$name: no message '$msg'"; }
}

mkcert() { # DIR CN
	mkdir -p "$1"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1/key.pem" -out "$1/cert.pem" \
		-days 1 -subj "/CN=$2" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null ||
		hard "openssl cannot create a certificate"
	chmod 600 "$1/key.pem"
}
# served_cn PORT: the subject CN of the certificate the agent presents now.
served_cn() {
	openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null |
		openssl x509 -noout -subject 2>/dev/null | sed 's/.*CN *= *//'
}
# handshake PORT ARGS...: 0 when a TLS handshake with these s_client options succeeds.
handshake() {
	local port=$1; shift
	openssl s_client -connect "127.0.0.1:$port" "$@" </dev/null >"$T/hs" 2>&1
	grep -q 'Cipher is [A-Z]' "$T/hs" && ! grep -q 'Cipher is (NONE)' "$T/hs"
}

# ---- L8: secrets readable by others are refused ----
mkdir -p "$T/l8/state"
printf 'abcdefghijklmnopqrstuvwxyz0123456789\n' >"$T/l8/state/api-token"
chmod 644 "$T/l8/state/api-token"
must_refuse l8 "accessible by group or others (mode 0644)"
mkcert "$T/tls0" first
chmod 640 "$T/tls0/key.pem"
must_refuse l8key "tls_key_file $T/tls0/key.pem is accessible by group or others" \
	--tls-cert-file "$T/tls0/cert.pem" --tls-key-file "$T/tls0/key.pem"
chmod 600 "$T/tls0/key.pem"
mkcert "$T/other" other
must_refuse mismatch "tls_cert_file $T/tls0/cert.pem / tls_key_file $T/other/key.pem" \
	--tls-cert-file "$T/tls0/cert.pem" --tls-key-file "$T/other/key.pem"
ok "L8: token file and TLS key readable by others, and a key of another certificate, are refused"

# ---- L1: the token cache is bounded ----
must_refuse l1 "token_cache_seconds" --token-cache-seconds 3600
ok "L1: token_cache_seconds above 300 refused"

# ---- M5: protocol versions and ciphers ----
start_named_agent tls --tls-cert-file "$T/tls0/cert.pem" --tls-key-file "$T/tls0/key.pem"
P=$PORT_tls
handshake "$P" -tls1_3 || fail "TLS 1.3 refused: $(cat "$T/hs")"
handshake "$P" -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256 || fail "TLS 1.2 ECDHE-GCM refused: $(cat "$T/hs")"
! handshake "$P" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' || fail "TLS 1.1 accepted"
! handshake "$P" -tls1 -cipher 'DEFAULT:@SECLEVEL=0' || fail "TLS 1.0 accepted"
! handshake "$P" -tls1_2 -cipher 'AES128-GCM-SHA256:@SECLEVEL=0' || fail "static RSA key exchange accepted"
! handshake "$P" -tls1_2 -cipher 'ECDHE-RSA-AES128-SHA:@SECLEVEL=0' || fail "CBC-SHA1 accepted"
ok "M5: TLS 1.2/1.3 with ECDHE and AEAD only"

# ---- L6 + reload: SIGHUP reloads the pair, and so does a change of the files ----
expect_eq "$(served_cn "$P")" first "certificate before reload"
mkcert "$T/tls1" second
cp "$T/tls1/key.pem" "$T/tls0/key.pem.new" && cp "$T/tls1/cert.pem" "$T/tls0/cert.pem.new"
# A half-written pair (new certificate, old key) is refused and the old pair stays in use.
mv "$T/tls0/cert.pem.new" "$T/tls0/cert.pem"
kill -HUP "$PID_tls"
sleep 0.5
kill -0 "$PID_tls" || fail "SIGHUP killed the agent"
grep -q "TLS reload failed, keeping the certificate in use" "$T/tls/agent.log" || fail "mismatched pair not refused"
expect_eq "$(served_cn "$P")" first "certificate after a refused reload"
mv "$T/tls0/key.pem.new" "$T/tls0/key.pem"
wait_for 5 sh -c "[ \"\$(openssl s_client -connect 127.0.0.1:$P </dev/null 2>/dev/null | openssl x509 -noout -subject | sed 's/.*CN *= *//')\" = second ]" ||
	fail "new certificate not served after the files changed: $(served_cn "$P")"
ok "certificate replaced on disk is served without a restart"
mkcert "$T/tls2" third
cp "$T/tls2/cert.pem" "$T/tls0/cert.pem"; cp "$T/tls2/key.pem" "$T/tls0/key.pem"
kill -HUP "$PID_tls"
wait_for 5 sh -c "[ \"\$(openssl s_client -connect 127.0.0.1:$P </dev/null 2>/dev/null | openssl x509 -noout -subject | sed 's/.*CN *= *//')\" = third ]" ||
	fail "SIGHUP did not load the third certificate"
out=$(curl -s --cacert "$T/tls2/cert.pem" "https://127.0.0.1:$P/ping")
expect_eq "$out" pong "HTTPS after reloads"
stop_named_agent tls
ok "L6: SIGHUP reloads the TLS pair and keeps the agent running"

# ---- plain HTTP on a node address warns ----
LISTEN=0.0.0.0 start_named_agent plain
grep -q "plain HTTP: tokens travel in clear" "$T/plain/agent.log" || fail "no warning for plain HTTP on 0.0.0.0"
stop_named_agent plain
start_named_agent loop
! grep -q "tokens travel in clear" "$T/loop/agent.log" || fail "plain HTTP warning on loopback"
# H1: the console route (passwords) exists on the admin socket only, not over TCP.
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_loop/servers/test/console")" 404 "console route over TCP"
expect_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_loop/servers/test/status")" 401 "status route over TCP without a token"
stop_named_agent loop
ok "plain HTTP on a non-loopback address logs a warning"

# ---- M2 + L5: slowloris from many clients, probes still answered ----
start_named_agent slow --api-request-timeout=4 --api-max-connections=256 --api-max-connections-per-ip=32 \
	--api-rate-limit=1000000
python3 - "$PORT_slow" <<'PY' || fail "slowloris"
import socket, sys, time, threading
port = int(sys.argv[1])
held = []
def slow(addr):
    s = socket.socket()
    s.bind((addr, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    held.append(s)
# A client at its limit (32) gets no 33rd connection: refused or closed at once.
for i in range(32):
    slow("127.0.0.2")
s = socket.socket(); s.bind(("127.0.0.2", 0)); s.settimeout(3)
s.connect(("127.0.0.1", port))
try:
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    got = s.recv(100)
except (ConnectionResetError, BrokenPipeError, socket.timeout):
    got = b""
assert not got.startswith(b"HTTP/1.1 200"), "per-client limit not enforced: %r" % got
# Then every slot of the listener: 256 slow clients from 8 addresses, 32 each.
for i in range(32, 256):
    slow("127.0.0.%d" % (2 + i // 32))
stop = False
def trickle():
    while not stop:
        for s in held:
            try:
                s.send(b"X")
            except OSError:
                pass
        time.sleep(0.5)
t = threading.Thread(target=trickle); t.start()
worst = 0
for k in range(10):
    t0 = time.time()
    p = socket.create_connection(("127.0.0.1", port), timeout=5)
    p.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = p.recv(100)
    p.close()
    dt = time.time() - t0
    worst = max(worst, dt)
    assert got.startswith(b"HTTP/1.1 200"), got
    time.sleep(0.5)
stop = True; t.join()
assert worst < 1.0, "/healthz took %.2fs while the slots were held" % worst
# Absolute deadline: slow clients that keep sending are cut after the request timeout (4 s)
# even without pressure.
alive = 0
for s in held:
    try:
        s.settimeout(0.01)
        if s.recv(1) == b"":
            continue
        alive += 1
    except socket.timeout:
        alive += 1
    except OSError:
        pass
assert alive == 0, "%d slow connections still open" % alive
print("ok: /healthz worst %.3fs under 256 slow connections" % worst)
PY
ok "M2: slowloris does not stop /healthz (absolute deadline, per-client limit)"
python3 - "$PORT_slow" <<'PY'
import socket, sys
for i in range(300):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"\x16\x03\x01garbage that is not HTTP\r\n\r\n")
    try:
        s.recv(100)
    except OSError:
        pass
    s.close()
PY
sleep 0.3
n=$(grep -c 'HTTP server:' "$T/slow/agent.log" || true)
[ "$n" -le 22 ] || fail "L5: $n HTTP server log lines for 300 malformed connections"
stop_named_agent slow
ok "L5: malformed-connection log lines rate limited ($n lines for 300)"
