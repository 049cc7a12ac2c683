/* The OnecloudCluster spec (onecloud.yunion.io/v1alpha1) as a typed struct, parsed with libyaml.
 * Pure logic: no I/O besides reading the file. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

enum ocr_component_id {
	OCR_KEYSTONE,
	OCR_REGION,
	OCR_SCHEDULER,
	OCR_GLANCE,
	OCR_WEBCONSOLE,
	OCR_HOSTAGENT,
	_OCR_COMPONENT_MAX,
};

/* What the renderer knows about each component (static table). */
struct ocr_component_info {
	const char *name; /* app.kubernetes.io/name, object names */
	const char *key;  /* spec key (Cloudpods': spec.region is the region's name) */
	int port;	  /* container port, also the NodePort (30000-32767) */
	bool storage;	  /* has a PersistentVolumeClaim */
	bool database;	  /* talks to MySQL: gets a Secret with the password */
	bool cronjob;	  /* keystone: hourly token flush */
	const char *default_size;
};
const struct ocr_component_info *ocr_component_info(enum ocr_component_id id);
/* -1 when key is no component's spec key. */
int ocr_component_from_key(const char *key);

struct ocr_component {
	char *image; /* NULL: <imageRepository>/<name>:<version> */
	int replicas;
	bool disable;
	char *storage_size;	  /* NULL: the component's default */
	char *storage_class_name; /* NULL: the cluster default class */
};

struct ocr_cluster {
	char *name, *namespace, *uid;
	char *mysql_host;
	int mysql_port;
	char *mysql_username, *mysql_password;
	char *region;
	char *image_repository;
	char *version;
	struct ocr_component components[_OCR_COMPONENT_MAX];
};

/* Parses path. On failure returns a negative errno and, when ret_error is not NULL, a message
 * "FILE:LINE: KEY.PATH: what is wrong". */
int ocr_cluster_load(const char *path, struct ocr_cluster **ret, char **ret_error);
struct ocr_cluster *ocr_cluster_free(struct ocr_cluster *c);
static inline void ocr_cluster_freep(struct ocr_cluster **c)
{
	ocr_cluster_free(*c);
}
/* The image a component runs. Caller frees. */
char *ocr_component_image(const struct ocr_cluster *c, enum ocr_component_id id);
/* Whether s is a valid storage quantity such as 10Gi or 500M (positive, no exponent). */
bool ocr_quantity_valid(const char *s);
