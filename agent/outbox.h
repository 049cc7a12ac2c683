/* The guest status outbox: per guest the latest status not yet accepted by the region, kept
 * as one file per guest (<dir>/<sid>.json, written atomically) so that no change is lost
 * across region outages or agent restarts. The delivery lives in agent/report.c.
 * The entries are owned by one thread (the loop); the files are written and removed by the
 * outbox's own writer thread in queue order, so the loop never waits on an fsync. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macros.h"

struct outbox;

struct outbox_entry {
	char *sid;
	char *status;
	char *power_states;
	uint64_t seq; /* global order of puts, persisted: replay runs oldest first */
};

/* Creates dir when missing and loads every valid <sid>.json in it (stray temp files and
 * unreadable entries are removed). */
int outbox_open(const char *dir, struct outbox **ret);
struct outbox *outbox_free(struct outbox *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct outbox *, outbox_free)

/* Records the latest status of sid, replacing an older undelivered one (latest wins): the
 * entry gets a new seq and moves to the end of the replay order. The entry is in memory when
 * this returns and its file is queued for the writer; a failed write keeps the file's old
 * content and counts in outbox_write_failures(). -EINVAL for an id that cannot be a file
 * name. There is no cap: one entry per guest, whatever the number of guests (a status is never
 * dropped for lack of room). */
int outbox_put(struct outbox *o, const char *sid, const char *status, const char *power_states);
/* The oldest entry (lowest seq) that is not in skip (may be NULL), or NULL. Valid until the
 * next put or ack. */
const struct outbox_entry *outbox_next(struct outbox *o, const char *skip);
/* The region accepted sid's status with this seq: removes the entry and (queued) its file,
 * unless a newer put replaced it meanwhile (then it stays for the next delivery; returns 0). */
int outbox_ack(struct outbox *o, const char *sid, uint64_t seq);
/* Forgets sid's entry whatever its seq (the guest is gone): 1 when there was one, else 0. */
int outbox_drop(struct outbox *o, const char *sid);
/* Waits until every queued file operation is done (outbox_free does it too). */
void outbox_flush(struct outbox *o);
/* File writes and removals that failed since open. Thread-safe. */
unsigned long outbox_write_failures(struct outbox *o);
size_t outbox_size(struct outbox *o);
/* Files outbox_open() removed as unusable. */
size_t outbox_removed(struct outbox *o);
/* The body of POST /servers/<sid>/status for an entry: {"server": {"status", "power_states"}}. */
json_t *outbox_entry_body(const struct outbox_entry *e);
/* The longest id (a guest's, or one the region gives: zone, wire, storage) that may name a file
 * and a URL path segment; the characters are id_is_valid()'s (common/path.h). */
