/* The sd-bus boundary of placement/placement.c (placement/placement-systemd.c). */
#pragma once

#include <sys/types.h>
#include <systemd/sd-bus.h>

/* Connects to the system bus (or address) and checks that systemd answers on it; method calls
 * time out after timeout_ms. */
int placement_systemd_open(const char *address, unsigned timeout_ms, sd_bus **ret);
/* Moves every thread of pid into the scope unit in slice: StartTransientUnit and waiting for
 * its job, or AttachProcessesToUnit when the unit exists. */
int placement_systemd_move(sd_bus *bus, const char *unit, const char *slice, pid_t pid,
			   unsigned timeout_ms);
/* "hostagent-qemu-<name>.scope", with systemd's \xNN escaping of other characters. */
int placement_systemd_unit_name(const char *vm_name, char **ret);
