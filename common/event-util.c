#include "common/event-util.h"

int event_source_arm(sd_event_source *s, uint64_t usec)
{
	int r = sd_event_source_set_time(s, usec);
	return r < 0 ? r : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

int event_source_arm_relative(sd_event_source *s, uint64_t after)
{
	int r = sd_event_source_set_time_relative(s, after);
	return r < 0 ? r : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

int event_reset_time_relative(sd_event *e, sd_event_source **s, uint64_t after, uint64_t accuracy,
			      sd_event_time_handler_t fn, void *userdata)
{
	if (*s)
		return event_source_arm_relative(*s, after);
	return sd_event_add_time_relative(e, s, CLOCK_MONOTONIC, after, accuracy, fn, userdata);
}
