/*
 * STUN for ICE.
 *
 * What an ICE-lite server needs from STUN is small and exact: read a
 * Binding request, prove it came from the peer that got our ice-pwd
 * (MESSAGE-INTEGRITY, HMAC-SHA1 keyed with the password, RFC 8489 14.5),
 * check it survived the wire (FINGERPRINT, CRC-32 xor 0x5354554e, 14.7),
 * and answer with the address we saw it come from (XOR-MAPPED-ADDRESS,
 * 14.2). The client side builds requests and reads responses the same way.
 *
 * The parser walks attributes with bounds checks on every length and never
 * reads past the datagram. Attributes after MESSAGE-INTEGRITY other than
 * FINGERPRINT are ignored, as the RFC requires, and FINGERPRINT must be
 * last. Integrity is computed over the message up to the attribute with the
 * header length rewritten as if it ended there, which is why the checks
 * copy the header rather than hashing the buffer in place.
 */
#include "rtc/stun.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

#define FP_XOR 0x5354554eu

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

uint32_t stun_crc32(const uint8_t *p, size_t n) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

int stun_is_stun(const uint8_t *p, size_t n) {
  return n >= STUN_HEADER && p[0] < 4 && rd32(p + 4) == STUN_MAGIC && (rd16(p + 2) & 3) == 0 &&
         (size_t)rd16(p + 2) + STUN_HEADER == n;
}

/* Message type bits: M11..M7 C1 M6..M4 C0 M3..M0 (RFC 8489 5). */
static void split_type(uint16_t t, int *cls, int *method) {
  *cls = ((t >> 7) & 2) | ((t >> 4) & 1);
  *method = (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80);
}

static uint16_t join_type(int cls, int method) {
  return (uint16_t)((method & 0x000f) | ((method & 0x0070) << 1) | ((method & 0x0f80) << 2) |
                    ((cls & 1) << 4) | ((cls & 2) << 7));
}

static int parse_xor_address(const uint8_t *v, size_t len, const uint8_t *txid,
                             struct sockaddr_storage *out) {
  if (len < 8) return -EBADMSG;
  uint16_t port = rd16(v + 2) ^ (uint16_t)(STUN_MAGIC >> 16);
  memset(out, 0, sizeof *out);
  if (v[1] == 1 && len == 8) {
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    uint32_t a = rd32(v + 4) ^ STUN_MAGIC;
    in->sin_addr.s_addr = htonl(a);
    return 0;
  }
  if (v[1] == 2 && len == 20) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    uint8_t key[16];
    wr32(key, STUN_MAGIC);
    memcpy(key + 4, txid, 12);
    for (int i = 0; i < 16; i++) in6->sin6_addr.s6_addr[i] = v[4 + i] ^ key[i];
    return 0;
  }
  return -EBADMSG;
}

static int take_attr(struct stun_msg *m, uint16_t type, const uint8_t *v, size_t len, size_t off) {
  switch (type) {
  case STUN_ATTR_USERNAME:
    if (len > 513) return -EBADMSG;
    m->username = v, m->username_len = len;
    break;
  case STUN_ATTR_PRIORITY:
    if (len != 4) return -EBADMSG;
    m->priority = rd32(v), m->has_priority = 1;
    break;
  case STUN_ATTR_USE_CANDIDATE:
    m->use_candidate = 1;
    break;
  case STUN_ATTR_ICE_CONTROLLING:
  case STUN_ATTR_ICE_CONTROLLED:
    if (len != 8) return -EBADMSG;
    m->tie_breaker = (uint64_t)rd32(v) << 32 | rd32(v + 4);
    if (type == STUN_ATTR_ICE_CONTROLLING) m->has_controlling = 1;
    else m->has_controlled = 1;
    break;
  case STUN_ATTR_MESSAGE_INTEGRITY:
    if (len != 20) return -EBADMSG;
    m->mi_offset = off;
    break;
  case STUN_ATTR_ERROR_CODE:
    if (len < 4) return -EBADMSG;
    m->error_code = (v[2] & 7) * 100 + v[3];
    break;
  case STUN_ATTR_XOR_MAPPED_ADDRESS:
    if (parse_xor_address(v, len, m->txid, &m->xor_mapped)) return -EBADMSG;
    m->has_xor_mapped = 1;
    break;
  default:
    if (type < 0x8000 && m->nunknown < (int)(sizeof m->unknown / sizeof m->unknown[0]))
      m->unknown[m->nunknown++] = type;
  }
  return 0;
}

int stun_parse(const uint8_t *p, size_t n, struct stun_msg *m) {
  memset(m, 0, sizeof *m);
  if (!stun_is_stun(p, n)) return -EBADMSG;
  m->data = p;
  m->len = n;
  m->txid = p + 8;
  split_type(rd16(p), &m->cls, &m->method);
  for (size_t off = STUN_HEADER; off < n;) {
    if (off + 4 > n) return -EBADMSG;
    uint16_t type = rd16(p + off), len = rd16(p + off + 2);
    size_t padded = ((size_t)len + 3) & ~(size_t)3;
    if (off + 4 + padded > n) return -EBADMSG;
    if (m->fp_offset) return -EBADMSG; /* FINGERPRINT must be last */
    if (type == STUN_ATTR_FINGERPRINT) {
      if (len != 4) return -EBADMSG;
      m->fp_offset = off;
    } else if (!m->mi_offset || type == STUN_ATTR_MESSAGE_INTEGRITY) {
      if (m->mi_offset && type == STUN_ATTR_MESSAGE_INTEGRITY) return -EBADMSG;
      int rc = take_attr(m, type, p + off + 4, len, off);
      if (rc) return rc;
    }
    off += 4 + padded;
  }
  return 0;
}

int stun_peek_username(const uint8_t *p, size_t n, const char **user, size_t *len) {
  struct stun_msg m;
  if (stun_parse(p, n, &m) || !m.username) return -EBADMSG;
  *user = (const char *)m.username;
  *len = m.username_len;
  return 0;
}

int stun_check_fingerprint(const struct stun_msg *m) {
  if (!m->fp_offset) return -EBADMSG;
  uint32_t want = stun_crc32(m->data, m->fp_offset) ^ FP_XOR;
  return rd32(m->data + m->fp_offset + 4) == want ? 0 : -EBADMSG;
}

/* HMAC-SHA1 over the message up to `end`, with the length field saying it ends at end+24. */
static void integrity(const uint8_t *msg, size_t end, const char *key, uint8_t out[20]) {
  uint8_t hdr[STUN_HEADER];
  memcpy(hdr, msg, STUN_HEADER);
  wr16(hdr + 2, (uint16_t)(end + 24 - STUN_HEADER));
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA1", 0), OSSL_PARAM_END};
  size_t got = 0;
  int ok = ctx && EVP_MAC_init(ctx, (const unsigned char *)key, strlen(key), params) &&
           EVP_MAC_update(ctx, hdr, STUN_HEADER) &&
           EVP_MAC_update(ctx, msg + STUN_HEADER, end - STUN_HEADER) &&
           EVP_MAC_final(ctx, out, &got, 20);
  if (!ok) memset(out, 0, 20); /* fails every check rather than passing one */
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
}

int stun_check_integrity(const struct stun_msg *m, const char *key) {
  if (!m->mi_offset) return -EACCES;
  uint8_t mac[20];
  integrity(m->data, m->mi_offset, key, mac);
  return CRYPTO_memcmp(mac, m->data + m->mi_offset + 4, 20) == 0 ? 0 : -EACCES;
}

/* --- building ---------------------------------------------------------------- */

void stun_begin(struct stun_writer *w, uint8_t *buf, size_t cap, int cls, int method,
                const uint8_t txid[12]) {
  w->buf = buf, w->cap = cap, w->len = 0, w->err = 0;
  if (cap < STUN_HEADER) {
    w->err = -ENOSPC;
    return;
  }
  wr16(buf, join_type(cls, method));
  wr16(buf + 2, 0);
  wr32(buf + 4, STUN_MAGIC);
  memcpy(buf + 8, txid, 12);
  w->len = STUN_HEADER;
}

void stun_put(struct stun_writer *w, uint16_t type, const void *value, size_t len) {
  size_t padded = (len + 3) & ~(size_t)3;
  if (w->err || len > 0xffff || w->len + 4 + padded > w->cap) {
    if (!w->err) w->err = -ENOSPC;
    return;
  }
  uint8_t *p = w->buf + w->len;
  wr16(p, type);
  wr16(p + 2, (uint16_t)len);
  if (len) memcpy(p + 4, value, len);
  memset(p + 4 + len, 0, padded - len);
  w->len += 4 + padded;
  wr16(w->buf + 2, (uint16_t)(w->len - STUN_HEADER));
}

void stun_put_u32(struct stun_writer *w, uint16_t type, uint32_t v) {
  uint8_t b[4];
  wr32(b, v);
  stun_put(w, type, b, 4);
}

void stun_put_u64(struct stun_writer *w, uint16_t type, uint64_t v) {
  uint8_t b[8];
  wr32(b, (uint32_t)(v >> 32));
  wr32(b + 4, (uint32_t)v);
  stun_put(w, type, b, 8);
}

void stun_put_xor_address(struct stun_writer *w, const struct sockaddr *addr) {
  uint8_t v[20] = {0};
  size_t len;
  if (addr->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)addr;
    v[1] = 1;
    wr16(v + 2, ntohs(in->sin_port) ^ (uint16_t)(STUN_MAGIC >> 16));
    wr32(v + 4, ntohl(in->sin_addr.s_addr) ^ STUN_MAGIC);
    len = 8;
  } else if (addr->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const void *)addr;
    uint8_t key[16];
    wr32(key, STUN_MAGIC);
    memcpy(key + 4, w->buf + 8, 12);
    v[1] = 2;
    wr16(v + 2, ntohs(in6->sin6_port) ^ (uint16_t)(STUN_MAGIC >> 16));
    for (int i = 0; i < 16; i++) v[4 + i] = in6->sin6_addr.s6_addr[i] ^ key[i];
    len = 20;
  } else {
    w->err = -EAFNOSUPPORT;
    return;
  }
  stun_put(w, STUN_ATTR_XOR_MAPPED_ADDRESS, v, len);
}

void stun_put_error(struct stun_writer *w, int code, const char *reason) {
  uint8_t v[132] = {0};
  size_t rl = strlen(reason);
  if (rl > 127) rl = 127;
  v[2] = (uint8_t)(code / 100);
  v[3] = (uint8_t)(code % 100);
  memcpy(v + 4, reason, rl);
  stun_put(w, STUN_ATTR_ERROR_CODE, v, 4 + rl);
}

int stun_finish(struct stun_writer *w, const char *key) {
  if (key) {
    uint8_t zero[20] = {0};
    size_t at = w->len;
    stun_put(w, STUN_ATTR_MESSAGE_INTEGRITY, zero, 20);
    if (!w->err) integrity(w->buf, at, key, w->buf + at + 4);
  }
  uint8_t zero4[4] = {0};
  size_t at = w->len;
  stun_put(w, STUN_ATTR_FINGERPRINT, zero4, 4);
  if (w->err) return w->err;
  wr32(w->buf + at + 4, stun_crc32(w->buf, at) ^ FP_XOR);
  return (int)w->len;
}

int stun_binding_success(const struct stun_msg *req, const struct sockaddr *from, const char *key,
                         uint8_t *out, size_t cap) {
  struct stun_writer w;
  stun_begin(&w, out, cap, STUN_SUCCESS, STUN_BINDING, req->txid);
  stun_put_xor_address(&w, from);
  return stun_finish(&w, key);
}

static const char *reason_for(int code) {
  switch (code) {
  case 400: return "Bad Request";
  case 401: return "Unauthenticated";
  case 420: return "Unknown Attribute";
  case 487: return "Role Conflict";
  default: return "Error";
  }
}

int stun_binding_error(const struct stun_msg *req, int code, const char *key, uint8_t *out,
                       size_t cap) {
  struct stun_writer w;
  stun_begin(&w, out, cap, STUN_ERROR, req->method ? req->method : STUN_BINDING, req->txid);
  stun_put_error(&w, code, reason_for(code));
  if (code == 420 && req->nunknown) {
    uint8_t v[16];
    for (int i = 0; i < req->nunknown; i++) wr16(v + 2 * i, req->unknown[i]);
    stun_put(&w, STUN_ATTR_UNKNOWN_ATTRIBUTES, v, 2 * (size_t)req->nunknown);
  }
  return stun_finish(&w, key);
}
