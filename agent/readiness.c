#include "agent/readiness.h"
#include "common/macros.h"

struct entry {
	struct entry *next;
	readiness_fn fn;
	void *userdata;
};

struct readiness {
	struct entry *head, *tail;
};

int readiness_new(struct readiness **ret)
{
	struct readiness *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*ret = r;
	return 0;
}

struct readiness *readiness_free(struct readiness *r)
{
	if (!r)
		return NULL;
	for (struct entry *e = r->head, *n; e; e = n) {
		n = e->next;
		free(e);
	}
	free(r);
	return NULL;
}

int readiness_add(struct readiness *r, readiness_fn fn, void *userdata)
{
	if (!r)
		return 0;
	struct entry *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	*e = (struct entry){.fn = fn, .userdata = userdata};
	if (r->tail)
		r->tail->next = e;
	else
		r->head = e;
	r->tail = e;
	return 0;
}

void readiness_remove(struct readiness *r, void *userdata)
{
	if (!r)
		return;
	struct entry **p = &r->head;
	r->tail = NULL;
	while (*p) {
		if ((*p)->userdata == userdata) {
			struct entry *gone = *p;
			*p = gone->next;
			free(gone);
		} else {
			r->tail = *p;
			p = &(*p)->next;
		}
	}
}

json_t *readiness_reasons(struct readiness *r)
{
	json_t *reasons = json_array();
	if (!reasons)
		return NULL;
	for (struct entry *e = r ? r->head : NULL; e; e = e->next)
		e->fn(e->userdata, reasons);
	if (json_array_size(reasons) == 0) {
		json_decref(reasons);
		return NULL;
	}
	return reasons;
}
