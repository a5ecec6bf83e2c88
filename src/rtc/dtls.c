/*
 * DTLS-SRTP.
 *
 * WebRTC uses DTLS only to agree on SRTP keys, and authenticates the peer
 * by the certificate fingerprint it put in its SDP (RFC 5763 5), not by a
 * chain of trust. So: the verify callback accepts any certificate, and once
 * the handshake is done the peer certificate's digest (with the hash the
 * SDP named) is compared to the fingerprint; a mismatch fails the session.
 *
 * OpenSSL does no I/O here. Incoming datagrams are written into a memory
 * BIO one at a time and the handshake is stepped. Outgoing data goes
 * through a small custom BIO whose every write is one datagram handed to
 * the send callback: a plain memory BIO would glue a flight's records into
 * one buffer and lose the datagram boundaries DTLS depends on. The MTU is
 * fixed at 1200 bytes so no record outgrows what any path carries.
 *
 * Retransmission is the caller's: it asks how long until the next one is
 * due and calls back then, so no thread ever sleeps in here.
 *
 * Once the keys are out, the OpenSSL object is dead weight: OpenSSL keeps a
 * DTLS connection's handshake buffer (in case the peer retransmits its last
 * flight) and its record buffers until the object goes, some 60 KB a call,
 * and SSL_MODE_RELEASE_BUFFERS does not give them back for DTLS. The only
 * things it could still do are answer a retransmitted final flight, which a
 * peer sending SRTP has no more need of, and read a close_notify, which
 * WebRTC does not rely on (the call also ends by signaling, RTCP BYE or
 * consent loss). So the caller releases it (dtls_session_release) when the
 * peer's SRTP arrives, and the session then ignores DTLS. We never send a
 * close_notify ourselves, released or not: the call's end reaches the page
 * by signaling, and its DTLS transport by consent checks going unanswered.
 */
#include "rtc/dtls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cert.h"

#define SRTP_LABEL "EXTRACTOR-dtls_srtp"
#define DEFAULT_PROFILES "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80"

struct dtls_cert {
  EVP_PKEY *key;
  X509 *x509;
  char fingerprint[3 * EVP_MAX_MD_SIZE + 1];
};

struct dtls_ctx {
  SSL_CTX *ssl_ctx;
  BIO_METHOD *out_method;
  enum dtls_role role;
};

struct dtls_session {
  struct dtls_ctx *ctx;
  SSL *ssl;
  BIO *in;
  dtls_send_fn send;
  void *user;
  enum dtls_state state;
  int released; /* the SSL object was freed after the handshake: DTLS is ignored */
  char fp_alg[16], fp[3 * EVP_MAX_MD_SIZE + 1];
  char error[160];
};

/* --- certificate ---------------------------------------------------------------- */

/* "AB:CD:..." of a digest into out (cap bytes, at least 3 * len). */
static void hex_colon(const unsigned char *md, unsigned len, char *out, size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (unsigned i = 0; i < len && o + 3 <= cap; i++) {
    if (i) out[o++] = ':';
    out[o++] = hex[md[i] >> 4];
    out[o++] = hex[md[i] & 0x0f];
  }
  if (cap) out[o < cap ? o : cap - 1] = '\0';
}

int dtls_cert_new(struct dtls_cert **out) {
  struct dtls_cert *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  c->x509 = c->key ? cert_self_signed(c->key, "tingshuo", 30, NULL) : NULL;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (!c->x509 || !X509_digest(c->x509, EVP_sha256(), md, &len)) {
    dtls_cert_free(c);
    return -EIO;
  }
  hex_colon(md, len, c->fingerprint, sizeof c->fingerprint);
  *out = c;
  return 0;
}

const char *dtls_cert_fingerprint(const struct dtls_cert *c) { return c->fingerprint; }

void dtls_cert_free(struct dtls_cert *c) {
  if (!c) return;
  X509_free(c->x509);
  EVP_PKEY_free(c->key);
  free(c);
}

/* --- the datagram BIO ------------------------------------------------------------- */

static int out_write(BIO *b, const char *data, int len) {
  struct dtls_session *s = BIO_get_data(b);
  if (s && s->send && len > 0) s->send(s->user, (const uint8_t *)data, (size_t)len);
  return len;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr) {
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_DGRAM_QUERY_MTU:
  case BIO_CTRL_DGRAM_GET_FALLBACK_MTU:
    return DTLS_MTU;
  default:
    return 0; /* nothing is ever pending: every write is sent at once */
  }
}

static int out_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

/* --- context ------------------------------------------------------------------------- */

static int accept_any(int ok, X509_STORE_CTX *store) { return 1; /* checked by fingerprint */ }

int dtls_ctx_new_profiles(struct dtls_ctx **out, struct dtls_cert *cert, enum dtls_role role,
                          const char *profiles) {
  struct dtls_ctx *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->role = role;
  c->ssl_ctx = SSL_CTX_new(DTLS_method());
  c->out_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tingshuo dgram");
  SSL_CTX *x = c->ssl_ctx;
  int ok = x && c->out_method && BIO_meth_set_write(c->out_method, out_write) &&
           BIO_meth_set_ctrl(c->out_method, out_ctrl) && BIO_meth_set_create(c->out_method, out_create) &&
           SSL_CTX_set_min_proto_version(x, DTLS1_2_VERSION) &&
           SSL_CTX_set_max_proto_version(x, DTLS1_2_VERSION) &&
           SSL_CTX_use_certificate(x, cert->x509) == 1 && SSL_CTX_use_PrivateKey(x, cert->key) == 1 &&
           SSL_CTX_set_cipher_list(x, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                                      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA") == 1 &&
           SSL_CTX_set1_groups_list(x, "X25519:P-256:P-384") == 1 &&
           SSL_CTX_set_tlsext_use_srtp(x, profiles ? profiles : DEFAULT_PROFILES) == 0; /* 0 = ok */
  if (!ok) {
    dtls_ctx_free(c);
    return -EIO;
  }
  SSL_CTX_set_verify(x, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
  SSL_CTX_set_options(x, SSL_OP_NO_QUERY_MTU | SSL_OP_NO_TICKET);
  SSL_CTX_set_read_ahead(x, 1);
  *out = c;
  return 0;
}

int dtls_ctx_new(struct dtls_ctx **out, struct dtls_cert *cert, enum dtls_role role) {
  return dtls_ctx_new_profiles(out, cert, role, NULL);
}

void dtls_ctx_free(struct dtls_ctx *c) {
  if (!c) return;
  SSL_CTX_free(c->ssl_ctx);
  BIO_meth_free(c->out_method);
  free(c);
}

/* --- session --------------------------------------------------------------------------- */

/*
 * No OpenSSL object is made here: a server's session is created on the
 * control thread along with its call, and the context belongs to the media
 * worker the call is handed to. The SSL object is made by ensure_ssl() on
 * first use, which is on the thread that owns the context.
 */
struct dtls_session *dtls_session_new(struct dtls_ctx *ctx, const char *fp_alg, const char *fp,
                                      dtls_send_fn send, void *user) {
  struct dtls_session *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->ctx = ctx;
  s->send = send;
  s->user = user;
  snprintf(s->fp_alg, sizeof s->fp_alg, "%s", fp_alg ? fp_alg : "");
  snprintf(s->fp, sizeof s->fp, "%s", fp ? fp : "");
  return s;
}

static enum dtls_state fail(struct dtls_session *s, const char *why);

/* 0 once the session has its SSL object; a session that cannot get one has failed. */
static int ensure_ssl(struct dtls_session *s) {
  if (s->ssl) return 0;
  if (s->state != DTLS_HANDSHAKING) return -1;
  SSL *ssl = SSL_new(s->ctx->ssl_ctx);
  BIO *in = BIO_new(BIO_s_mem());
  BIO *outb = BIO_new(s->ctx->out_method);
  if (!ssl || !in || !outb) {
    BIO_free(in);
    BIO_free(outb);
    SSL_free(ssl);
    fail(s, "cannot create the DTLS session (out of memory)");
    return -1;
  }
  BIO_set_mem_eof_return(in, -1);
  BIO_set_data(outb, s);
  SSL_set_bio(ssl, in, outb); /* the SSL owns both now */
  SSL_set_mtu(ssl, DTLS_MTU);
  DTLS_set_link_mtu(ssl, DTLS_MTU);
  if (s->ctx->role == DTLS_ROLE_SERVER) SSL_set_accept_state(ssl);
  else SSL_set_connect_state(ssl);
  s->ssl = ssl;
  s->in = in;
  return 0;
}

void dtls_session_free(struct dtls_session *s) {
  if (!s) return;
  SSL_free(s->ssl);
  free(s);
}

void dtls_session_set_send(struct dtls_session *s, dtls_send_fn send, void *user) {
  s->send = send;
  s->user = user;
}

static enum dtls_state fail(struct dtls_session *s, const char *why) {
  if (s->state != DTLS_FAILED) {
    snprintf(s->error, sizeof s->error, "%s", why);
    s->state = DTLS_FAILED;
  }
  ERR_clear_error();
  return s->state;
}

static const EVP_MD *digest_named(const char *alg) {
  if (strcasecmp(alg, "sha-256") == 0) return EVP_sha256();
  if (strcasecmp(alg, "sha-1") == 0) return EVP_sha1();
  if (strcasecmp(alg, "sha-224") == 0) return EVP_sha224();
  if (strcasecmp(alg, "sha-384") == 0) return EVP_sha384();
  if (strcasecmp(alg, "sha-512") == 0) return EVP_sha512();
  return NULL;
}

static int fingerprint_matches(struct dtls_session *s) {
  const EVP_MD *md = digest_named(s->fp_alg);
  X509 *peer = SSL_get1_peer_certificate(s->ssl);
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  char hex[3 * EVP_MAX_MD_SIZE + 1];
  int ok = md && peer && X509_digest(peer, md, d, &len);
  X509_free(peer);
  if (!ok) return 0;
  hex_colon(d, len, hex, sizeof hex);
  return strcasecmp(hex, s->fp) == 0;
}

static enum dtls_state step(struct dtls_session *s) {
  if (s->state == DTLS_HANDSHAKING) {
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) {
      if (!fingerprint_matches(s)) return fail(s, "fingerprint mismatch");
      if (!SSL_get_selected_srtp_profile(s->ssl)) return fail(s, "no SRTP profile agreed");
      s->state = DTLS_CONNECTED;
      return s->state;
    }
    int err = SSL_get_error(s->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return s->state;
    char why[128];
    unsigned long e = ERR_peek_last_error();
    snprintf(why, sizeof why, "handshake failed: %s", e ? ERR_reason_error_string(e) : "peer went away");
    return fail(s, why);
  }
  if (s->state == DTLS_CONNECTED) {
    /* Drain application data (none expected) and notice close_notify. */
    unsigned char buf[2048];
    int n = SSL_read(s->ssl, buf, sizeof buf);
    if (n <= 0 && SSL_get_error(s->ssl, n) == SSL_ERROR_ZERO_RETURN) {
      snprintf(s->error, sizeof s->error, "peer closed DTLS");
      s->state = DTLS_CLOSED;
    }
    ERR_clear_error();
  }
  return s->state;
}

enum dtls_state dtls_session_start(struct dtls_session *s) {
  if (ensure_ssl(s)) return s->state;
  return step(s);
}

enum dtls_state dtls_session_handle(struct dtls_session *s, const uint8_t *data, size_t len) {
  if (s->state == DTLS_FAILED || s->state == DTLS_CLOSED) return s->state;
  if (len == 0 || len > 65535 || s->released) return s->state;
  if (ensure_ssl(s)) return s->state;
  BIO_write(s->in, data, (int)len);
  enum dtls_state st = step(s);
  (void)BIO_reset(s->in); /* whatever was not consumed was not a valid record */
  return st;
}

enum dtls_state dtls_session_state(const struct dtls_session *s) { return s->state; }
const char *dtls_session_error(const struct dtls_session *s) { return s->error; }
enum dtls_role dtls_session_role(const struct dtls_session *s) { return s->ctx->role; }

long dtls_session_timeout_ms(struct dtls_session *s) {
  struct timeval tv;
  if (s->state != DTLS_HANDSHAKING || !s->ssl || !DTLSv1_get_timeout(s->ssl, &tv)) return -1;
  return tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void dtls_session_on_timer(struct dtls_session *s) {
  if (s->state != DTLS_HANDSHAKING || !s->ssl) return;
  if (DTLSv1_handle_timeout(s->ssl) < 0) fail(s, "handshake timed out");
}

int dtls_session_srtp_keys(struct dtls_session *s, int *profile, uint8_t *material, size_t *len) {
  if (s->state != DTLS_CONNECTED) return -EAGAIN;
  if (s->released) return -ENOENT;
  SRTP_PROTECTION_PROFILE *p = SSL_get_selected_srtp_profile(s->ssl);
  if (!p) return -EPROTO;
  size_t need = p->id == DTLS_SRTP_AEAD_AES_128_GCM ? 2 * (16 + 12) : 2 * (16 + 14);
  if (p->id != DTLS_SRTP_AEAD_AES_128_GCM && p->id != DTLS_SRTP_AES128_CM_SHA1_80) return -EPROTO;
  if (*len < need) return -ENOSPC;
  if (SSL_export_keying_material(s->ssl, material, need, SRTP_LABEL, strlen(SRTP_LABEL), NULL, 0, 0) != 1)
    return -EIO;
  *profile = (int)p->id;
  *len = need;
  return 0;
}

void dtls_session_release(struct dtls_session *s) {
  if (s->state != DTLS_CONNECTED || s->released) return;
  SSL_free(s->ssl); /* and both BIOs with it */
  s->ssl = NULL;
  s->in = NULL;
  s->released = 1;
}

int dtls_cert_fingerprint_as(const struct dtls_cert *c, const char *alg, char *out, size_t cap) {
  const EVP_MD *md = digest_named(alg);
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (!md) return -EINVAL;
  if (!X509_digest(c->x509, md, d, &len)) return -EIO;
  if (cap < 3 * (size_t)len) return -ENOSPC;
  hex_colon(d, len, out, cap);
  return 0;
}
