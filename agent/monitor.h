/* The QEMU monitor passthrough filter (POST /servers/<sid>/monitor): read-only queries (HMP
 * "info ...", QMP "query-*") and power/run control (system_powerdown, system_reset, stop, cont)
 * only. QMP commands are parsed strictly (duplicate keys refused, only "execute", "arguments"
 * and "id" allowed) and re-serialised, so that what was checked is byte for byte what QEMU gets
 * (security review L9). Pure: no libvirt, no I/O, any thread. */
#pragma once

#include <stdbool.h>

/* 0 and the command to send in *ret_forward (caller frees), -EPERM for a command outside the
 * allow-list, -EINVAL for a malformed one. */
int monitor_filter(const char *cmd, bool qmp, char **ret_forward);
