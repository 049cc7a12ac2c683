/* Connection deadlines for one MHD listener. MHD's own timeout is an idle timeout: a client
 * that sends one byte every few seconds (slowloris) holds its slot forever, and when every
 * slot is held the probes cannot connect. This table, fed by MHD_OPTION_NOTIFY_CONNECTION,
 * gives every connection an absolute deadline to deliver a complete request (counted from
 * its start or from the end of its previous request); a connection past it is shut down.
 * While the listener is nearly full, the deadline for connections still sending their
 * request drops to half a second, so slots free up for requests that arrive whole, such as
 * probes. Connections whose request is complete and waits for the agent's own work are never
 * cut. Loop thread only. */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

struct api_conns;

int api_conns_new(sd_event *e, unsigned limit, unsigned deadline_sec, struct api_conns **ret);
struct api_conns *api_conns_free(struct api_conns *t);
/* MHD_OPTION_NOTIFY_CONNECTION callback; cls is the table. */
void api_conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
		      enum MHD_ConnectionNotificationCode toe);
/* The connection's request is complete (busy) or its reply has been sent (idle again). */
void api_conns_set_busy(struct MHD_Connection *c, bool busy);
/* Connections cut so far. */
unsigned long api_conns_cut(const struct api_conns *t);
