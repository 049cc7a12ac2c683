/* The replies of operations (agent/ops.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent/ops.h"

void op_reply_clear(struct op_reply *r)
{
	free(r->message);
	json_decref(r->body);
	*r = (struct op_reply){0};
}

int op_reply_fail(struct op_reply *r, int error, const char *fmt, ...)
{
	int saved_errno = errno; /* for %m */
	op_reply_clear(r);
	errno = saved_errno;
	r->error = error;
	va_list ap;
	va_start(ap, fmt);
	r->message = vstrprintf(fmt, ap);
	va_end(ap);
	return error;
}

void op_reply_ok(struct op_reply *r, json_t *body)
{
	op_reply_clear(r);
	r->body = body;
}
