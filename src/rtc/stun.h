/*
 * stun: STUN messages (RFC 8489) as ICE uses them (RFC 8445), no sockets.
 *
 * A parsed message points into the caller's buffer. Builders write into a
 * caller buffer and end with MESSAGE-INTEGRITY and FINGERPRINT.
 */
#ifndef TS_RTC_STUN_H
#define TS_RTC_STUN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define STUN_HEADER 20
#define STUN_MAGIC 0x2112A442u

enum stun_class { STUN_REQUEST = 0, STUN_INDICATION = 1, STUN_SUCCESS = 2, STUN_ERROR = 3 };
#define STUN_BINDING 0x001

enum stun_attr {
  STUN_ATTR_MAPPED_ADDRESS = 0x0001,
  STUN_ATTR_USERNAME = 0x0006,
  STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
  STUN_ATTR_ERROR_CODE = 0x0009,
  STUN_ATTR_UNKNOWN_ATTRIBUTES = 0x000A,
  STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
  STUN_ATTR_PRIORITY = 0x0024,
  STUN_ATTR_USE_CANDIDATE = 0x0025,
  STUN_ATTR_SOFTWARE = 0x8022,
  STUN_ATTR_FINGERPRINT = 0x8028,
  STUN_ATTR_ICE_CONTROLLED = 0x8029,
  STUN_ATTR_ICE_CONTROLLING = 0x802A,
};

struct stun_msg {
  const uint8_t *data; /* the whole message */
  size_t len;
  int cls, method;
  const uint8_t *txid; /* 12 bytes */
  const uint8_t *username;
  size_t username_len;
  uint32_t priority;
  int has_priority, use_candidate, has_controlling, has_controlled;
  uint64_t tie_breaker;
  size_t mi_offset;  /* offset of MESSAGE-INTEGRITY, 0 if absent */
  size_t fp_offset;  /* offset of FINGERPRINT, 0 if absent */
  int error_code;    /* from ERROR-CODE, 0 if absent */
  uint16_t unknown[8]; /* comprehension-required attributes we do not know */
  int nunknown;
  struct sockaddr_storage xor_mapped;
  int has_xor_mapped;
};

/* 1 when `p` looks like a STUN message (RFC 7983 first byte 0..3 and the cookie). */
int stun_is_stun(const uint8_t *p, size_t n);

/* Parses and checks structure; -EBADMSG when malformed. Does not check MI/FP. */
int stun_parse(const uint8_t *p, size_t n, struct stun_msg *m);

/* Parses and returns USERNAME (pointing into `p`), for routing to a call. */
int stun_peek_username(const uint8_t *p, size_t n, const char **user, size_t *len);

/* FINGERPRINT present and right: 0, else -EBADMSG. */
int stun_check_fingerprint(const struct stun_msg *m);
/* MESSAGE-INTEGRITY present and right for short-term password `key`: 0, else -EACCES. */
int stun_check_integrity(const struct stun_msg *m, const char *key);

uint32_t stun_crc32(const uint8_t *p, size_t n);

/* --- building ------------------------------------------------------------- */

struct stun_writer {
  uint8_t *buf;
  size_t cap, len;
  int err;
};

void stun_begin(struct stun_writer *w, uint8_t *buf, size_t cap, int cls, int method,
                const uint8_t txid[12]);
void stun_put(struct stun_writer *w, uint16_t type, const void *value, size_t len);
void stun_put_u32(struct stun_writer *w, uint16_t type, uint32_t v);
void stun_put_u64(struct stun_writer *w, uint16_t type, uint64_t v);
void stun_put_xor_address(struct stun_writer *w, const struct sockaddr *addr);
void stun_put_error(struct stun_writer *w, int code, const char *reason);
/* Appends MESSAGE-INTEGRITY (if key) and FINGERPRINT; returns the length or a negative errno. */
int stun_finish(struct stun_writer *w, const char *key);

/* The binding success response to request `req` from `from`, signed with `key`. */
int stun_binding_success(const struct stun_msg *req, const struct sockaddr *from, const char *key,
                         uint8_t *out, size_t cap);
/* An error response (400, 401, 420, 487) to `req`; signed when `key` is non-NULL. */
int stun_binding_error(const struct stun_msg *req, int code, const char *key, uint8_t *out,
                       size_t cap);

#endif
