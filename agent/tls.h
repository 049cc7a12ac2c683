/* The API's TLS credentials: certificate chain and key read from files, checked (key matches
 * the certificate, key file not readable by group or others), and handed to libmicrohttpd per
 * handshake through GnuTLS's certificate callback, so that a reload (SIGHUP, or the files
 * changing on disk) takes effect for the next connection without restarting the listener or
 * dropping connections. Loop thread only. */
#pragma once

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <systemd/sd-event.h>

#include "common/macros.h"

/* No TLS 1.0/1.1, no static-RSA key exchange, AEAD ciphers only (no CBC, no SHA-1 MAC). */
#define TLS_PRIORITIES                                                                             \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-RSA:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:"   \
	"+CHACHA20-POLY1305:-MAC-ALL:+AEAD:%SERVER_PRECEDENCE"

struct tls_creds;

/* Reads and checks cert_file and key_file; *ret_error names the file and the problem. */
int tls_creds_new(const char *cert_file, const char *key_file, struct tls_creds **ret,
		  char **ret_error);
struct tls_creds *tls_creds_free(struct tls_creds *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct tls_creds *, tls_creds_free)
/* Reads the files again; on any error the credentials in use stay and the error is logged.
 * Returns 0 when the new pair is in use. */
int tls_creds_reload(struct tls_creds *c);
/* Watches the directories of both files and reloads when either changes. */
int tls_creds_watch(struct tls_creds *c, sd_event *e);
/* Reloads counted since start (for tests and the log). */
unsigned tls_creds_generation(const struct tls_creds *c);
/* Makes c the credentials the handshake callback serves (one API listener per process). */
void tls_creds_activate(struct tls_creds *c);
/* For MHD_OPTION_HTTPS_CERT_CALLBACK. */
int tls_cert_callback(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
		      const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
		      gnutls_pcert_st **pcert, unsigned int *pcert_length,
		      gnutls_privkey_t *privkey);
