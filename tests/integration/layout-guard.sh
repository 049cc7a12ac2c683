#!/bin/bash
# tests/check-layout.sh passes on the tree and fails on a planted violation of each kind: a
# libvirt call outside agent/virt.c, a low module including a higher one, a module in no layer,
# an exception of tests/layout.txt that nothing needs.
. "$(dirname "$0")/lib.sh"
CHECK=$top_srcdir/tests/check-layout.sh
out=$("$CHECK" "$top_srcdir") || fail "layout check fails on the tree: $out"
ok "tree: $out"
plant() { rm -rf "$T/tree"; mkdir -p "$T/tree"; cp -r "$top_srcdir/agent" "$T/tree/"; find "$T/tree" -name '*.o' -delete; }

plant
printf '#include <libvirt/libvirt.h>\nint tasks_peek(virConnectPtr c);\nint tasks_peek(virConnectPtr c) { return virConnectIsAlive(c); }\n' >>"$T/tree/agent/tasks.c"
out=$("$CHECK" "$T/tree") && fail "a libvirt call in agent/tasks.c passed"
expect_contains "$out" "agent/tasks.c:" "libvirt violation names the file"
expect_contains "$out" "calls virConnectIsAlive(): libvirt is called from agent/virt.c only" "libvirt violation"
ok "libvirt call outside the boundary refused"

plant
sed -i '1i #include "agent/guests.h"' "$T/tree/agent/outbox.c"
out=$("$CHECK" "$T/tree") && fail "outbox including guests passed"
expect_contains "$out" "agent/outbox.c (layer 0) includes agent/guests.h (layer 3)" "upward include"
ok "upward include refused"

plant
printf 'int stray(void);\nint stray(void) { return 0; }\n' >"$T/tree/agent/stray.c"
out=$("$CHECK" "$T/tree") && fail "a module in no layer passed"
expect_contains "$out" "module stray is in no layer" "unlisted module"
ok "module in no layer refused"

# An exception of tests/layout.txt that nothing needs any more must go: the list only shrinks.
plant
mkdir -p "$T/tree/tests"
cp "$CHECK" "$top_srcdir/tests/layout.txt" "$T/tree/tests/"
echo 'allow outbox -> guests' >>"$T/tree/tests/layout.txt"
out=$("$T/tree/tests/check-layout.sh" "$T/tree") && fail "a stale exception passed"
expect_contains "$out" "'allow outbox -> guests' is not needed any more" "stale exception"
ok "exception nothing needs refused"
