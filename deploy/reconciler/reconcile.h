/* One reconcile pass: apply what differs, delete what a disabled component left behind. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "deploy/reconciler/kube.h"
#include "deploy/reconciler/spec.h"

struct ocr_stats {
	unsigned created, updated, unchanged, deleted, failed;
};

/* Whether every field of desired is in live with the same value (objects recursively, lists
 * element by element and of the same length): the fields ocreconciler manages are exactly the
 * ones it sends, and whatever the server adds (status, defaults, metadata) is not drift. */
bool ocr_subset(const json_t *desired, const json_t *live);

/* Reconciles every component of c against the API server. Writes one line per object to out
 * ("Kind ns/name: unchanged|created|updated (drift)|deleted") and logs each failure naming the
 * object and the server's message. Returns the number of failed objects (0: all done). */
int ocr_reconcile(const struct ocr_kube *k, const struct ocr_cluster *c, FILE *out,
		  struct ocr_stats *stats);
