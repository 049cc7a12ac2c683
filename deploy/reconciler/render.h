/* Renders the Kubernetes objects of an OnecloudCluster as jansson JSON. Pure logic. */
#pragma once

#include <jansson.h>
#include <stdio.h>

#include "deploy/reconciler/spec.h"

#define OCR_FIELD_MANAGER  "ocreconciler"
#define OCR_LABEL_NAME	   "app.kubernetes.io/name"
#define OCR_LABEL_MANAGED  "app.kubernetes.io/managed-by"
#define OCR_LABEL_INSTANCE "app.kubernetes.io/instance"

/* Every kind the reconciler writes, in apply order. */
struct ocr_kind {
	const char *kind;
	const char *api_version; /* "v1", "apps/v1", "batch/v1" */
	const char *plural;	 /* URL resource name */
};
extern const struct ocr_kind ocr_kinds[];
extern const size_t ocr_n_kinds;
const struct ocr_kind *ocr_kind_find(const char *kind);

/* The objects of one component (none when it is disabled), appended to array. */
int ocr_render_component(const struct ocr_cluster *c, enum ocr_component_id id, json_t *array);
/* The objects of every enabled component, in apply order. */
int ocr_render(const struct ocr_cluster *c, json_t **ret);
/* Writes objects as a multi-document YAML stream of JSON documents ("---" before each,
 * keys sorted, two-space indent): the --dry-run output and the golden-file format. */
int ocr_dump_objects(const json_t *array, FILE *f);
/* Base64 (RFC 4648, padded) of len bytes of s; caller frees. */
char *ocr_base64(const char *s, size_t len);
