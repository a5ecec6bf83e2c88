/*
 * SRTP contexts: RFC 3711 (AES128_CM_SHA1_80) and RFC 7714 (AEAD_AES_128_GCM)
 * on OpenSSL's EVP interface.
 *
 * DTLS-SRTP exports client_key | server_key | client_salt | server_salt
 * (RFC 5764 4.2). Each side protects with its own half and unprotects with
 * the peer's, so a context has two directions, each with its own session
 * keys: a packet of ours reflected back never authenticates, because it is
 * checked against the peer's keys.
 *
 * Why not libsrtp: Debian builds it on NSS, where every key context costs
 * about 5 KB and a call's two sessions 34 KB of heap. Here the session keys
 * are derived once (key derivation rate 0, so once is all there is) and held
 * as pre-keyed EVP contexts: per packet only the IV changes, which sets no
 * key schedule. A CM direction holds four contexts (AES-CTR and HMAC-SHA1,
 * for RTP and for RTCP), a GCM direction two.
 *
 * Keys are per direction; sequence state is per SSRC, since a browser may
 * send more than one stream. Up to SRTPCTX_MAX_SSRC streams a direction are
 * tracked; a packet from yet another SSRC is refused. An inbound stream is
 * created only by a packet that authenticates, so forged packets cannot use
 * up the slots, and is allocated then (once per SSRC, not per packet): a
 * call usually has one, and the 1024-packet replay window is most of it.
 *
 * Inbound, the packet index (ROC || SEQ) is estimated from the highest one
 * seen (RFC 3711 3.3.1 and appendix A), the replay window is consulted, the
 * tag is checked (constant time), and only then is the payload decrypted and
 * the window advanced. GCM is the exception to the order: EVP verifies its
 * tag while decrypting, so a forged GCM packet is decrypted in place before
 * it is refused; the caller drops it, and the window is not touched.
 *
 * Outbound, the index is tracked the same way from the sequence numbers the
 * caller writes; the SRTCP index is a per-SSRC counter. Protecting for a
 * ninth SSRC fails with -ENOBUFS.
 *
 * Per packet nothing is keyed and nothing allocated by this file. Under GCM
 * OpenSSL allocates nothing either; its HMAC (3.0) does, twice a packet, as
 * it copies its keyed digest states back into the working one. Hashing the
 * padded key again instead would allocate just as often in 3.0 and cost two
 * more SHA-1 blocks; bench/srtp_speed.c counts and times it.
 *
 * The state is about 6 KB a call under CM and 5 KB under GCM (the EVP
 * contexts), plus some 180 bytes per inbound SSRC; the libsrtp sessions on
 * NSS it replaced took 34 KB or more.
 */
#include "rtc/srtpctx.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "rtc/dtls.h"

#define SRTPCTX_MAX_SSRC 8
#define KEY_LEN 16
#define CM_SALT_LEN 14
#define GCM_SALT_LEN 12
#define AUTH_KEY_LEN 20
#define CM_TAG_LEN 10
#define GCM_TAG_LEN 16
#define RTP_WINDOW 1024 /* packets, as libsrtp was configured */
#define RTCP_WINDOW 128
#define E_BIT 0x80000000u

/* Keys for one kind of packet (RTP or RTCP) in one direction. */
struct keyset {
  EVP_CIPHER_CTX *cipher; /* AES-128-CTR or AES-128-GCM, keyed */
  EVP_MAC_CTX *mac;       /* HMAC-SHA1, keyed; NULL under GCM */
  uint8_t salt[CM_SALT_LEN];
};

struct direction {
  struct keyset rtp, rtcp;
};

struct tx_stream {
  uint32_t ssrc;
  uint32_t roc;
  uint16_t seq;        /* highest sequence number sent */
  uint8_t sent_rtp;
  uint32_t rtcp_index; /* last SRTCP index used */
};

struct rx_stream {
  uint32_t ssrc;
  uint8_t have_rtp, have_rtcp;
  uint64_t rtp_top;  /* highest index accepted: ROC << 16 | SEQ */
  uint64_t rtcp_top; /* highest SRTCP index accepted */
  uint64_t rtp_win[RTP_WINDOW / 64];   /* bit i: rtp_top - i was accepted */
  uint64_t rtcp_win[RTCP_WINDOW / 64];
};

struct srtpctx {
  int gcm;
  struct direction out, in;
  int ntx, nrx;
  struct tx_stream tx[SRTPCTX_MAX_SSRC];
  struct rx_stream *rx[SRTPCTX_MAX_SSRC];
};

/*
 * The algorithms are fetched from the default provider when a context is
 * keyed; OpenSSL caches them, so nothing needs holding here. Init only
 * checks that they exist, so a library without AES-GCM fails at start-up
 * rather than at a call's first packet.
 */
int srtpctx_global_init(void) {
  EVP_CIPHER *ctr = EVP_CIPHER_fetch(NULL, "AES-128-CTR", NULL);
  EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
  EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  int ok = ctr && gcm && hmac;
  EVP_CIPHER_free(ctr);
  EVP_CIPHER_free(gcm);
  EVP_MAC_free(hmac);
  return ok ? 0 : -EIO;
}

void srtpctx_global_shutdown(void) {}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- Key derivation (RFC 3711 4.3.1, AES-CM PRF, rate 0) ---- */

/*
 * The PRF is AES-CTR under the master key from x = label XOR master salt,
 * the label at octet 7 of the 14-octet salt (a GCM master salt of 12 octets
 * is taken as padded with zeros, RFC 7714 11). `ctx` is keyed with the
 * master key by the caller.
 */
static int prf(EVP_CIPHER_CTX *ctx, const uint8_t *msalt, size_t saltlen, uint8_t label,
               uint8_t *out, size_t n) {
  uint8_t iv[16] = {0};
  memcpy(iv, msalt, saltlen);
  iv[7] ^= label;
  memset(out, 0, n);
  int outl;
  if (!EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv)) return -EIO;
  return EVP_EncryptUpdate(ctx, out, &outl, out, (int)n) ? 0 : -EIO;
}

/* One session key from master key and salt; exposed for the RFC 3711 B.3 vectors. */
int srtpctx_derive(const uint8_t *mkey, const uint8_t *msalt, size_t saltlen, uint8_t label,
                   uint8_t *out, size_t n) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return -ENOMEM;
  int rc = EVP_EncryptInit_ex(ctx, EVP_aes_128_ctr(), NULL, mkey, NULL) ? 0 : -EIO;
  if (rc == 0) rc = prf(ctx, msalt, saltlen, label, out, n);
  EVP_CIPHER_CTX_free(ctx);
  return rc;
}

static void keyset_free(struct keyset *k) {
  EVP_CIPHER_CTX_free(k->cipher); /* cleanses the key schedule */
  EVP_MAC_CTX_free(k->mac);
  OPENSSL_cleanse(k->salt, sizeof k->salt);
  k->cipher = NULL;
  k->mac = NULL;
}

static int keyset_mac(struct keyset *k, const uint8_t *auth) {
  EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  if (!hmac) return -EIO;
  k->mac = EVP_MAC_CTX_new(hmac);
  EVP_MAC_free(hmac); /* the context holds its own reference */
  if (!k->mac) return -ENOMEM;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA1", 0),
                         OSSL_PARAM_construct_end()};
  return EVP_MAC_init(k->mac, auth, AUTH_KEY_LEN, params) ? 0 : -EIO;
}

/* Keys `k` from session keys directly (the RFC vectors' starting point). */
static int keyset_set(struct keyset *k, int gcm, const uint8_t *key, const uint8_t *salt,
                      const uint8_t *auth) {
  k->cipher = EVP_CIPHER_CTX_new();
  if (!k->cipher) return -ENOMEM;
  const EVP_CIPHER *alg = gcm ? EVP_aes_128_gcm() : EVP_aes_128_ctr();
  if (!EVP_EncryptInit_ex(k->cipher, alg, NULL, key, NULL)) return -EIO;
  memcpy(k->salt, salt, gcm ? GCM_SALT_LEN : CM_SALT_LEN);
  return gcm ? 0 : keyset_mac(k, auth);
}

/* Derives and keys RTP (labels 0-2) or RTCP (labels 3-5) of one direction. */
static int keyset_derive(struct keyset *k, int gcm, const uint8_t *mkey, const uint8_t *msalt,
                         uint8_t first_label) {
  uint8_t key[KEY_LEN], salt[CM_SALT_LEN], auth[AUTH_KEY_LEN];
  size_t saltlen = gcm ? GCM_SALT_LEN : CM_SALT_LEN;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return -ENOMEM;
  int rc = EVP_EncryptInit_ex(ctx, EVP_aes_128_ctr(), NULL, mkey, NULL) ? 0 : -EIO;
  if (rc == 0) rc = prf(ctx, msalt, saltlen, first_label, key, sizeof key);
  if (rc == 0) rc = prf(ctx, msalt, saltlen, first_label + 1, auth, sizeof auth);
  if (rc == 0) rc = prf(ctx, msalt, saltlen, first_label + 2, salt, saltlen);
  EVP_CIPHER_CTX_free(ctx);
  if (rc == 0) rc = keyset_set(k, gcm, key, salt, auth);
  OPENSSL_cleanse(key, sizeof key);
  OPENSSL_cleanse(salt, sizeof salt);
  OPENSSL_cleanse(auth, sizeof auth);
  return rc;
}

static int direction_derive(struct direction *d, int gcm, const uint8_t *mkey,
                            const uint8_t *msalt) {
  int rc = keyset_derive(&d->rtp, gcm, mkey, msalt, 0);
  return rc ? rc : keyset_derive(&d->rtcp, gcm, mkey, msalt, 3);
}

int srtpctx_new(struct srtpctx **out, int profile, const uint8_t *material, size_t len,
                int is_client) {
  size_t saltlen;
  if (profile == DTLS_SRTP_AEAD_AES_128_GCM) saltlen = GCM_SALT_LEN;
  else if (profile == DTLS_SRTP_AES128_CM_SHA1_80) saltlen = CM_SALT_LEN;
  else return -EINVAL;
  if (len != 2 * (KEY_LEN + saltlen)) return -EINVAL;
  const uint8_t *ck = material, *sk = material + KEY_LEN;
  const uint8_t *cs = material + 2 * KEY_LEN, *ss = cs + saltlen;
  struct srtpctx *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->gcm = profile == DTLS_SRTP_AEAD_AES_128_GCM;
  int rc = direction_derive(&c->out, c->gcm, is_client ? ck : sk, is_client ? cs : ss);
  if (rc == 0) rc = direction_derive(&c->in, c->gcm, is_client ? sk : ck, is_client ? ss : cs);
  if (rc) {
    srtpctx_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

/*
 * A context whose four keysets all use the given session keys (salt of the
 * profile's length; `auth` ignored under GCM). Not part of the API: it lets
 * the tests run the RFC 3711 B.2 and RFC 7714 16 vectors, which start from
 * session keys.
 */
int srtpctx_new_session(struct srtpctx **out, int profile, const uint8_t *key,
                        const uint8_t *salt, const uint8_t *auth) {
  struct srtpctx *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->gcm = profile == DTLS_SRTP_AEAD_AES_128_GCM;
  struct keyset *ks[] = {&c->out.rtp, &c->out.rtcp, &c->in.rtp, &c->in.rtcp};
  int rc = 0;
  for (size_t i = 0; i < 4 && rc == 0; i++) rc = keyset_set(ks[i], c->gcm, key, salt, auth);
  if (rc) {
    srtpctx_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

void srtpctx_free(struct srtpctx *c) {
  if (!c) return;
  keyset_free(&c->out.rtp);
  keyset_free(&c->out.rtcp);
  keyset_free(&c->in.rtp);
  keyset_free(&c->in.rtcp);
  for (int i = 0; i < c->nrx; i++) free(c->rx[i]);
  OPENSSL_cleanse(c, sizeof *c);
  free(c);
}

/* ---- Streams, index estimation and the replay window ---- */

static struct tx_stream *tx_stream(struct srtpctx *c, uint32_t ssrc) {
  for (int i = 0; i < c->ntx; i++)
    if (c->tx[i].ssrc == ssrc) return &c->tx[i];
  if (c->ntx == SRTPCTX_MAX_SSRC) return NULL;
  struct tx_stream *s = &c->tx[c->ntx++];
  memset(s, 0, sizeof *s);
  s->ssrc = ssrc;
  return s;
}

static struct rx_stream *rx_find(struct srtpctx *c, uint32_t ssrc) {
  for (int i = 0; i < c->nrx; i++)
    if (c->rx[i]->ssrc == ssrc) return c->rx[i];
  return NULL;
}

/* The stream for an authenticated packet from a new SSRC. */
static struct rx_stream *rx_add(struct srtpctx *c, uint32_t ssrc) {
  if (c->nrx == SRTPCTX_MAX_SSRC) return NULL;
  struct rx_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->ssrc = ssrc;
  c->rx[c->nrx++] = s;
  return s;
}

/*
 * RFC 3711 appendix A: the ROC guess for `seq` given the highest sequence
 * number s_l and its ROC, choosing the candidate index nearest to it.
 */
static uint64_t estimate_index(uint32_t roc, uint16_t s_l, uint16_t seq) {
  uint32_t v = roc;
  if (s_l < 32768) {
    if (seq > s_l && seq - s_l > 32768 && roc > 0) v = roc - 1;
  } else if (seq < s_l - 32768) {
    v = roc + 1;
  }
  return (uint64_t)v << 16 | seq;
}

/* 0 if `idx` is new to a window whose newest entry is `top`; -EACCES if seen or too old. */
static int window_check(const uint64_t *win, size_t bits, int have, uint64_t top, uint64_t idx) {
  if (!have || idx > top) return 0;
  uint64_t d = top - idx;
  if (d >= bits) return -EACCES;
  return (win[d / 64] >> (d % 64)) & 1 ? -EACCES : 0;
}

/* Records `idx` (already checked) as seen, sliding the window if it is the newest. */
static void window_add(uint64_t *win, size_t bits, int have, uint64_t *top, uint64_t idx) {
  size_t words = bits / 64;
  if (have && idx <= *top) {
    uint64_t d = *top - idx;
    win[d / 64] |= (uint64_t)1 << (d % 64);
    return;
  }
  uint64_t shift = have ? idx - *top : bits;
  if (shift >= bits) {
    memset(win, 0, words * sizeof *win);
  } else {
    size_t ws = (size_t)shift / 64, bs = (size_t)shift % 64;
    for (size_t k = words; k-- > 0;) {
      uint64_t hi = k >= ws ? win[k - ws] << bs : 0;
      uint64_t lo = bs && k >= ws + 1 ? win[k - ws - 1] >> (64 - bs) : 0;
      win[k] = hi | lo;
    }
  }
  win[0] |= 1;
  *top = idx;
}

/* ---- Packet transforms ---- */

/* Length of an RTP header with its CSRCs and extension, or 0 if it does not fit. */
static size_t rtp_header_len(const uint8_t *p, size_t len) {
  if (len < 12 || (p[0] >> 6) != 2) return 0;
  size_t h = 12 + 4 * (size_t)(p[0] & 0x0f);
  if (p[0] & 0x10) {
    if (len < h + 4) return 0;
    h += 4 + 4 * (size_t)((p[h + 2] << 8) | p[h + 3]);
  }
  return h <= len ? h : 0;
}

/* AES-CM IV (RFC 3711 4.1.1): salt XOR SSRC at octets 4-7 XOR the 48-bit index at 8-13. */
static void cm_iv(uint8_t iv[16], const uint8_t *salt, uint32_t ssrc, uint64_t index) {
  memcpy(iv, salt, CM_SALT_LEN);
  iv[14] = iv[15] = 0;
  uint8_t s[4];
  put32(s, ssrc);
  for (int i = 0; i < 4; i++) iv[4 + i] ^= s[i];
  for (int i = 0; i < 6; i++) iv[8 + i] ^= (uint8_t)(index >> (40 - 8 * i));
}

/* GCM IV (RFC 7714 8.1, 9.1): salt XOR (0 0 | SSRC | 32-bit hi | 16-bit lo). */
static void gcm_iv(uint8_t iv[12], const uint8_t *salt, uint32_t ssrc, uint32_t hi, uint16_t lo) {
  memset(iv, 0, 12);
  put32(iv + 2, ssrc);
  put32(iv + 6, hi);
  iv[10] = (uint8_t)(lo >> 8);
  iv[11] = (uint8_t)lo;
  for (int i = 0; i < 12; i++) iv[i] ^= salt[i];
}

static int ctr_crypt(struct keyset *k, const uint8_t iv[16], uint8_t *p, size_t n) {
  int outl;
  if (!EVP_EncryptInit_ex(k->cipher, NULL, NULL, NULL, iv)) return -EIO;
  return n == 0 || EVP_EncryptUpdate(k->cipher, p, &outl, p, (int)n) ? 0 : -EIO;
}

/* HMAC-SHA1 of a || b, all 20 octets. */
static int hmac(struct keyset *k, const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
                uint8_t out[20]) {
  size_t outl;
  if (!EVP_MAC_init(k->mac, NULL, 0, NULL)) return -EIO; /* back to the keyed state */
  if (!EVP_MAC_update(k->mac, a, an) || (bn && !EVP_MAC_update(k->mac, b, bn))) return -EIO;
  return EVP_MAC_final(k->mac, out, &outl, 20) ? 0 : -EIO;
}

/*
 * AES-GCM over one packet: `aad` and `aad2` authenticated, `n` octets at `p`
 * en- or decrypted in place, the tag written (encrypt) or checked (decrypt).
 */
static int gcm_crypt(struct keyset *k, const uint8_t iv[12], int enc, const uint8_t *aad,
                     size_t aadn, const uint8_t *aad2, size_t aad2n, uint8_t *p, size_t n,
                     uint8_t *tag) {
  EVP_CIPHER_CTX *x = k->cipher;
  int outl;
  if (!EVP_CipherInit_ex(x, NULL, NULL, NULL, iv, enc)) return -EIO;
  if (!enc && !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, GCM_TAG_LEN, tag)) return -EIO;
  if (!EVP_CipherUpdate(x, NULL, &outl, aad, (int)aadn)) return -EIO;
  if (aad2n && !EVP_CipherUpdate(x, NULL, &outl, aad2, (int)aad2n)) return -EIO;
  if (n && !EVP_CipherUpdate(x, p, &outl, p, (int)n)) return -EIO;
  if (!EVP_CipherFinal_ex(x, p + n, &outl)) return enc ? -EIO : -EACCES;
  if (enc && !EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, GCM_TAG_LEN, tag)) return -EIO;
  return 0;
}

int srtpctx_protect_rtp(struct srtpctx *c, uint8_t *p, size_t *len, size_t cap) {
  if (*len + SRTPCTX_MAX_OVERHEAD > cap || *len > INT32_MAX / 2) return -ENOSPC;
  size_t h = rtp_header_len(p, *len);
  if (!h) return -EINVAL;
  uint32_t ssrc = get32(p + 8);
  uint16_t seq = (uint16_t)(p[2] << 8 | p[3]);
  struct tx_stream *s = tx_stream(c, ssrc);
  if (!s) return -ENOBUFS;
  uint64_t idx = s->sent_rtp ? estimate_index(s->roc, s->seq, seq) : seq;
  uint32_t roc = (uint32_t)(idx >> 16);
  struct keyset *k = &c->out.rtp;
  int rc;
  if (c->gcm) {
    uint8_t iv[12];
    gcm_iv(iv, k->salt, ssrc, roc, seq);
    rc = gcm_crypt(k, iv, 1, p, h, NULL, 0, p + h, *len - h, p + *len);
    if (rc == 0) *len += GCM_TAG_LEN;
  } else {
    uint8_t iv[16], r[4], tag[20];
    cm_iv(iv, k->salt, ssrc, idx);
    put32(r, roc);
    rc = ctr_crypt(k, iv, p + h, *len - h);
    if (rc == 0) rc = hmac(k, p, *len, r, 4, tag);
    if (rc == 0) {
      memcpy(p + *len, tag, CM_TAG_LEN);
      *len += CM_TAG_LEN;
    }
  }
  if (rc == 0 && (!s->sent_rtp || idx > ((uint64_t)s->roc << 16 | s->seq))) {
    s->roc = roc;
    s->seq = seq;
    s->sent_rtp = 1;
  }
  return rc;
}

int srtpctx_unprotect_rtp(struct srtpctx *c, uint8_t *p, size_t *len) {
  size_t taglen = c->gcm ? GCM_TAG_LEN : CM_TAG_LEN;
  if (*len > INT32_MAX / 2 || *len < 12 + taglen) return -EBADMSG;
  size_t n = *len - taglen, h = rtp_header_len(p, n);
  if (!h) return -EBADMSG;
  uint32_t ssrc = get32(p + 8);
  uint16_t seq = (uint16_t)(p[2] << 8 | p[3]);
  struct rx_stream *s = rx_find(c, ssrc);
  if (!s && c->nrx == SRTPCTX_MAX_SSRC) return -EACCES;
  /* A new stream's first packet: ROC 0, as for libsrtp's inbound template. */
  uint64_t idx = s && s->have_rtp ? estimate_index((uint32_t)(s->rtp_top >> 16),
                                                   (uint16_t)s->rtp_top, seq) : seq;
  if (s && window_check(s->rtp_win, RTP_WINDOW, s->have_rtp, s->rtp_top, idx)) return -EACCES;
  uint32_t roc = (uint32_t)(idx >> 16);
  struct keyset *k = &c->in.rtp;
  int rc;
  if (c->gcm) {
    uint8_t iv[12];
    gcm_iv(iv, k->salt, ssrc, roc, seq);
    rc = gcm_crypt(k, iv, 0, p, h, NULL, 0, p + h, n - h, p + n);
  } else {
    uint8_t iv[16], r[4], tag[20];
    put32(r, roc);
    rc = hmac(k, p, n, r, 4, tag);
    if (rc == 0 && CRYPTO_memcmp(tag, p + n, CM_TAG_LEN)) rc = -EACCES;
    cm_iv(iv, k->salt, ssrc, idx);
    if (rc == 0) rc = ctr_crypt(k, iv, p + h, n - h);
  }
  if (rc) return rc == -EIO ? -EACCES : rc;
  if (!s && !(s = rx_add(c, ssrc))) return -ENOMEM;
  window_add(s->rtp_win, RTP_WINDOW, s->have_rtp, &s->rtp_top, idx);
  s->have_rtp = 1;
  *len = n;
  return 0;
}

int srtpctx_protect_rtcp(struct srtpctx *c, uint8_t *p, size_t *len, size_t cap) {
  if (*len + SRTPCTX_MAX_OVERHEAD > cap || *len > INT32_MAX / 2) return -ENOSPC;
  if (*len < 8) return -EINVAL;
  uint32_t ssrc = get32(p + 4);
  struct tx_stream *s = tx_stream(c, ssrc);
  if (!s) return -ENOBUFS;
  uint32_t index = (s->rtcp_index + 1) & ~E_BIT;
  uint8_t ei[4];
  put32(ei, E_BIT | index);
  struct keyset *k = &c->out.rtcp;
  int rc;
  size_t n = *len;
  if (c->gcm) {
    /* RFC 7714 9: header and E||index are the AAD; the trailer follows the tag. */
    uint8_t iv[12];
    gcm_iv(iv, k->salt, ssrc, 0, 0);
    put32(iv + 8, get32(iv + 8) ^ index); /* the 31-bit index at octets 8-11 */
    rc = gcm_crypt(k, iv, 1, p, 8, ei, 4, p + 8, n - 8, p + n);
    if (rc == 0) {
      memcpy(p + n + GCM_TAG_LEN, ei, 4);
      *len = n + GCM_TAG_LEN + 4;
    }
  } else {
    uint8_t iv[16], tag[20];
    cm_iv(iv, k->salt, ssrc, index);
    rc = ctr_crypt(k, iv, p + 8, n - 8);
    memcpy(p + n, ei, 4);
    if (rc == 0) rc = hmac(k, p, n + 4, NULL, 0, tag);
    if (rc == 0) {
      memcpy(p + n + 4, tag, CM_TAG_LEN);
      *len = n + 4 + CM_TAG_LEN;
    }
  }
  if (rc == 0) s->rtcp_index = index;
  return rc;
}

int srtpctx_unprotect_rtcp(struct srtpctx *c, uint8_t *p, size_t *len) {
  size_t taglen = c->gcm ? GCM_TAG_LEN : CM_TAG_LEN;
  if (*len > INT32_MAX / 2 || *len < 8 + 4 + taglen) return -EBADMSG;
  /* CM: packet | E||index | tag. GCM: packet | tag | E||index. */
  size_t n = *len - 4 - taglen;
  const uint8_t *ei = c->gcm ? p + *len - 4 : p + n;
  uint8_t *tag = c->gcm ? p + n : p + n + 4;
  uint32_t word = get32(ei), index = word & ~E_BIT;
  uint32_t ssrc = get32(p + 4);
  struct rx_stream *s = rx_find(c, ssrc);
  if (!s && c->nrx == SRTPCTX_MAX_SSRC) return -EACCES;
  if (s && window_check(s->rtcp_win, RTCP_WINDOW, s->have_rtcp, s->rtcp_top, index))
    return -EACCES;
  struct keyset *k = &c->in.rtcp;
  int rc;
  if (c->gcm) {
    uint8_t iv[12];
    gcm_iv(iv, k->salt, ssrc, 0, 0);
    put32(iv + 8, get32(iv + 8) ^ index);
    /* Unencrypted (E = 0): the whole packet is AAD. */
    size_t aadn = word & E_BIT ? 8 : n;
    rc = gcm_crypt(k, iv, 0, p, aadn, ei, 4, p + aadn, n - aadn, tag);
  } else {
    uint8_t iv[16], t[20];
    rc = hmac(k, p, n + 4, NULL, 0, t);
    if (rc == 0 && CRYPTO_memcmp(t, tag, CM_TAG_LEN)) rc = -EACCES;
    cm_iv(iv, k->salt, ssrc, index);
    if (rc == 0 && (word & E_BIT)) rc = ctr_crypt(k, iv, p + 8, n - 8);
  }
  if (rc) return rc == -EIO ? -EACCES : rc;
  if (!s && !(s = rx_add(c, ssrc))) return -ENOMEM;
  window_add(s->rtcp_win, RTCP_WINDOW, s->have_rtcp, &s->rtcp_top, index);
  s->have_rtcp = 1;
  *len = n;
  return 0;
}
