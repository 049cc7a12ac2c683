/* HTTP requests driven by the event loop: libcurl's multi interface on sd-event (sockets as
 * I/O sources, curl's timeout as one timer), so requests to keystone and the region need no
 * thread and a cancelled request is simply removed. Loop thread only. Implemented in
 * agent/httploop.c; the requests themselves are those of common/http-client.h. */
#pragma once

#include <stddef.h>
#include <systemd/sd-event.h>

struct http_request;
struct http_response;
struct httploop;
struct httploop_req;

/* r < 0 when no response came (the errors of http_request_run). resp is valid only during the
 * call. */
typedef void (*httploop_done_fn)(int r, const struct http_response *resp, void *userdata);

/* max_in_flight: submits beyond it get -EBUSY. */
int httploop_new(sd_event *event, size_t max_in_flight, struct httploop **ret);
/* Cancels every request still running (their done is never called). NULL-safe. */
struct httploop *httploop_free(struct httploop *l);

/* Starts req (its strings are copied). done runs later on the loop, never from inside this
 * call. *ret_req (optional) stays valid until done runs or httploop_cancel(). */
int httploop_submit(struct httploop *l, const struct http_request *req, httploop_done_fn done,
		    void *userdata, struct httploop_req **ret_req);
/* Stops the request at once (a request already sent may still have reached the server); done
 * is never called. NULL-safe. */
void httploop_cancel(struct httploop_req *q);
size_t httploop_in_flight(const struct httploop *l);
