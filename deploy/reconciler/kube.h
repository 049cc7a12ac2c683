/* Kubernetes API client over common/http-client: server-side apply, get, list, delete. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

struct ocr_kube {
	char *server;	  /* "https://host:port", no trailing slash */
	char *token_file; /* NULL: no Authorization header */
	char *ca_file;	  /* NULL: the system trust store */
	bool insecure;
	char *token; /* read from token_file by ocr_kube_load_token() */
};

void ocr_kube_done(struct ocr_kube *k);
/* (Re)reads the bearer token: service account tokens are rotated. */
int ocr_kube_load_token(struct ocr_kube *k);

/* URL path of an object (name NULL: its collection) of kind in namespace ns. */
char *ocr_kube_path(const char *kind, const char *ns, const char *name);

/* The outcome of one request that got an answer: status, parsed JSON body (NULL when it was
 * not JSON) and, for 4xx/5xx, the server's message (Status.message, else the body's start). */
struct ocr_kube_reply {
	long status;
	json_t *body;
	char *message;
};
void ocr_kube_reply_done(struct ocr_kube_reply *r);

/* A negative errno when no answer came; otherwise 0 with *ret filled, whatever the status. */
int ocr_kube_get(const struct ocr_kube *k, const char *path, struct ocr_kube_reply *ret);
/* GET path?labelSelector=selector. */
int ocr_kube_list(const struct ocr_kube *k, const char *path, const char *selector,
		  struct ocr_kube_reply *ret);
/* Server-side apply: PATCH path?fieldManager=ocreconciler&force=true, apply-patch+yaml. */
int ocr_kube_apply(const struct ocr_kube *k, const char *path, const json_t *obj,
		   struct ocr_kube_reply *ret);
int ocr_kube_delete(const struct ocr_kube *k, const char *path, struct ocr_kube_reply *ret);
