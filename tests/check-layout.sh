#!/bin/bash
# Fails when the agent's module layout is broken (tests/layout.txt): an agent/ module includes a
# header of a higher layer, a module is in no layer, or a file other than the libvirt boundary
# (agent/virt.c and the listed exceptions) calls a vir* function. Usage: check-layout.sh [DIR]
# (DIR defaults to the source tree; the test of this check points it at a planted copy).
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
exec python3 - "$root" "$(dirname "$0")/layout.txt" <<'PY'
import os, re, sys
root, spec = sys.argv[1], sys.argv[2]
layer, allow, libvirt = {}, set(), {"virt"}
for n, line in enumerate(open(spec), 1):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    m = re.match(r"layer (\d+):\s*(.*)$", line)
    if m:
        for mod in m.group(2).split():
            layer[mod] = int(m.group(1))
        continue
    m = re.match(r"allow (\S+) -> (\S+)$", line)
    if m:
        allow.add((m.group(1), m.group(2)))
        continue
    m = re.match(r"libvirt (.+)$", line)
    if m:
        libvirt.update(m.group(1).split())
        continue
    sys.exit("%s:%d: cannot parse %r" % (spec, n, line))
errors, used = [], set()
agent = os.path.join(root, "agent")
inc = re.compile(r'^\s*#\s*include\s+"agent/([A-Za-z0-9_-]+)\.h"', re.M)
call = re.compile(r"(?<![A-Za-z0-9_])(vir[A-Z][A-Za-z0-9]*)\s*\(")
comment = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
for name in sorted(os.listdir(agent)):
    if not name.endswith((".c", ".h")):
        continue
    mod = name[:-2]
    text = open(os.path.join(agent, name), encoding="utf-8", errors="replace").read()
    if mod not in layer:
        errors.append("agent/%s: module %s is in no layer of tests/layout.txt" % (name, mod))
        continue
    for m in inc.finditer(text):
        h = m.group(1)
        if h not in layer:
            errors.append("agent/%s includes agent/%s.h, which is in no layer" % (name, h))
        elif layer[h] > layer[mod] and (mod, h) in allow:
            used.add((mod, h))
        elif layer[h] > layer[mod]:
            errors.append("agent/%s (layer %d) includes agent/%s.h (layer %d): a module "
                          "includes only its own layer and below" % (name, layer[mod], h, layer[h]))
    if name.endswith(".c") and mod not in libvirt:
        code = comment.sub("", text)
        for m in call.finditer(code):
            line = code.count("\n", 0, m.start()) + 1
            errors.append("agent/%s:%d: calls %s(): libvirt is called from agent/virt.c only"
                          % (name, line, m.group(1)))
            break
# An exception nothing needs any more is removed, so the list only shrinks.
for mod, h in sorted(allow - used):
    errors.append("tests/layout.txt: 'allow %s -> %s' is not needed any more: remove it" % (mod, h))
for e in errors:
    print(e)
if errors:
    sys.exit(1)
print("layout: %d modules in %d layers, %d known include exceptions, libvirt in %s" % (
    len(layer), len(set(layer.values())), len(allow), ", ".join(sorted(libvirt))))
PY
