#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "agent/tls.h"
#include "common/event-util.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/macros.h"

#define TLS_FILE_MAX	(1024 * 1024)
#define MAX_CHAIN	16
#define RETIRED_KEEP	2 /* generations kept after replacement: handshakes in flight use them */
#define RELOAD_DELAY_US (200 * 1000)

/* One certificate chain and its key, as GnuTLS hands them to a handshake. */
struct tls_pair {
	gnutls_pcert_st pcert[MAX_CHAIN];
	unsigned n_pcert;
	gnutls_privkey_t key;
};

struct tls_creds {
	char *cert_file, *key_file;
	struct tls_pair *cur;
	struct tls_pair *retired[RETIRED_KEEP];
	unsigned generation;
	sd_event *event;
	sd_event_source *watch[2], *delay;
};

/* GnuTLS's certificate callback takes no user data: this is the one mutable module-level
 * pointer of the agent, set and read on the loop thread only (MHD runs there). */
static struct tls_creds *active;

static struct tls_pair *pair_free(struct tls_pair *p)
{
	if (!p)
		return NULL;
	for (unsigned i = 0; i < p->n_pcert; i++)
		gnutls_pcert_deinit(&p->pcert[i]);
	if (p->key)
		gnutls_privkey_deinit(p->key);
	free(p);
	return NULL;
}

static int fail(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(char **ret_error, int r, const char *fmt, ...)
{
	if (ret_error) {
		va_list ap;
		va_start(ap, fmt);
		free(*ret_error);
		if (vasprintf(ret_error, fmt, ap) < 0)
			*ret_error = NULL;
		va_end(ap);
	}
	return r;
}

static int pair_load(const char *cert_file, const char *key_file, struct tls_pair **ret,
		     char **ret_error)
{
	struct stat st;
	if (stat(key_file, &st) < 0)
		return fail(ret_error, negative_errno(), "tls_key_file %s: %m", key_file);
	if (st.st_mode & 077)
		return fail(ret_error, -EPERM,
			    "tls_key_file %s is accessible by group or others (mode %04o): "
			    "chmod 0600 it",
			    key_file, (unsigned)(st.st_mode & 07777));
	_cleanup_free_ char *cert = NULL, *key = NULL;
	size_t cert_len = 0, key_len = 0;
	int r = read_file(cert_file, TLS_FILE_MAX, &cert, &cert_len);
	if (r < 0)
		return fail(ret_error, r, "tls_cert_file %s: %m", cert_file);
	r = read_file(key_file, TLS_FILE_MAX, &key, &key_len);
	if (r < 0)
		return fail(ret_error, r, "tls_key_file %s: %m", key_file);
	gnutls_datum_t cd = {(unsigned char *)cert, (unsigned)cert_len};
	gnutls_datum_t kd = {(unsigned char *)key, (unsigned)key_len};

	/* The credentials API checks that the key belongs to the certificate. */
	gnutls_certificate_credentials_t probe;
	if (gnutls_certificate_allocate_credentials(&probe) < 0)
		return -ENOMEM;
	int g = gnutls_certificate_set_x509_key_mem2(probe, &cd, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
	gnutls_certificate_free_credentials(probe);
	if (g < 0)
		return fail(ret_error, -EINVAL, "tls_cert_file %s / tls_key_file %s: %s", cert_file,
			    key_file, gnutls_strerror(g));

	struct tls_pair *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	unsigned n = MAX_CHAIN;
	g = gnutls_pcert_list_import_x509_raw(p->pcert, &n, &cd, GNUTLS_X509_FMT_PEM, 0);
	if (g < 0) {
		pair_free(p);
		return fail(ret_error, -EINVAL, "tls_cert_file %s: %s", cert_file,
			    gnutls_strerror(g));
	}
	p->n_pcert = n;
	if (gnutls_privkey_init(&p->key) < 0 ||
	    (g = gnutls_privkey_import_x509_raw(p->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		pair_free(p);
		return fail(ret_error, -EINVAL, "tls_key_file %s: %s", key_file,
			    gnutls_strerror(g));
	}
	explicit_bzero(key, key_len);
	*ret = p;
	return 0;
}

int tls_creds_new(const char *cert_file, const char *key_file, struct tls_creds **ret,
		  char **ret_error)
{
	_cleanup_(tls_creds_freep) struct tls_creds *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cert_file = strdup(cert_file);
	c->key_file = strdup(key_file);
	if (!c->cert_file || !c->key_file)
		return -ENOMEM;
	int r = pair_load(cert_file, key_file, &c->cur, ret_error);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(c);
	return 0;
}

struct tls_creds *tls_creds_free(struct tls_creds *c)
{
	if (!c)
		return NULL;
	if (active == c)
		active = NULL;
	for (size_t i = 0; i < ELEMENTSOF(c->watch); i++)
		sd_event_source_disable_unref(c->watch[i]);
	sd_event_source_disable_unref(c->delay);
	sd_event_unref(c->event);
	pair_free(c->cur);
	for (size_t i = 0; i < RETIRED_KEEP; i++)
		pair_free(c->retired[i]);
	free(c->cert_file);
	free(c->key_file);
	free(c);
	return NULL;
}

int tls_creds_reload(struct tls_creds *c)
{
	_cleanup_free_ char *err = NULL;
	struct tls_pair *p = NULL;
	int r = pair_load(c->cert_file, c->key_file, &p, &err);
	if (r < 0)
		return log_error_errno(r, "TLS reload failed, keeping the certificate in use: %s",
				       err ? err : "out of memory");
	pair_free(c->retired[RETIRED_KEEP - 1]);
	memmove(&c->retired[1], &c->retired[0], (RETIRED_KEEP - 1) * sizeof(c->retired[0]));
	c->retired[0] = c->cur;
	c->cur = p;
	c->generation++;
	log_info("TLS certificate reloaded cert=%s generation=%u", c->cert_file, c->generation);
	return 0;
}

unsigned tls_creds_generation(const struct tls_creds *c)
{
	return c ? c->generation : 0;
}

void tls_creds_activate(struct tls_creds *c)
{
	active = c;
}

int tls_cert_callback(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
		      const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
		      gnutls_pcert_st **pcert, unsigned int *pcert_length,
		      gnutls_privkey_t *privkey)
{
	(void)session, (void)req_ca_rdn, (void)nreqs, (void)pk_algos, (void)pk_algos_length;
	if (!active || !active->cur)
		return -1;
	*pcert = active->cur->pcert;
	*pcert_length = active->cur->n_pcert;
	*privkey = active->cur->key;
	return 0;
}

static int on_delay(sd_event_source *s, uint64_t usec, void *userdata)
{
	(void)s, (void)usec;
	(void)tls_creds_reload(userdata);
	return 0;
}

static int on_inotify(sd_event_source *s, const struct inotify_event *ev, void *userdata)
{
	(void)s, (void)ev;
	struct tls_creds *c = userdata;
	/* Writers replace files in several steps (Kubernetes swaps a symlink): reload once the
	 * directory has been quiet for a moment. */
	uint64_t now;
	sd_event_now(c->event, CLOCK_MONOTONIC, &now);
	if (!c->delay) {
		int r = sd_event_add_time(c->event, &c->delay, CLOCK_MONOTONIC,
					  now + RELOAD_DELAY_US, 0, on_delay, c);
		if (r < 0)
			log_warning_errno(r, "Failed to arm the TLS reload timer: %m");
		return 0;
	}
	(void)event_source_arm(c->delay, now + RELOAD_DELAY_US);
	return 0;
}

int tls_creds_watch(struct tls_creds *c, sd_event *e)
{
	c->event = sd_event_ref(e);
	const char *files[2] = {c->cert_file, c->key_file};
	for (size_t i = 0; i < 2; i++) {
		_cleanup_free_ char *copy = strdup(files[i]);
		if (!copy)
			return -ENOMEM;
		const char *dir = dirname(copy);
		if (i == 1) {
			_cleanup_free_ char *c0 = strdup(c->cert_file);
			if (c0 && streq(dirname(c0), dir))
				break; /* one watch covers both */
		}
		int r = sd_event_add_inotify(e, &c->watch[i], dir,
					     IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
						 IN_ATTRIB,
					     on_inotify, c);
		if (r < 0)
			return r;
	}
	return 0;
}
