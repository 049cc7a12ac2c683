/* sd-event timers, the one way this tree arms them (after systemd's event_reset_time()).
 * CLOCK_MONOTONIC throughout; every timer here is one-shot: it fires once per arming. */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

/* Arms an existing timer source to fire once at usec (absolute) / after `after` from now. */
int event_source_arm(sd_event_source *s, uint64_t usec);
int event_source_arm_relative(sd_event_source *s, uint64_t after);
/* Adds *s (a timer calling fn with userdata, accuracy in usec, 0 for sd-event's default) when
 * there is none yet, else re-arms it: either way it fires once, `after` from now. */
int event_reset_time_relative(sd_event *e, sd_event_source **s, uint64_t after, uint64_t accuracy,
			      sd_event_time_handler_t fn, void *userdata);
