/*
 * ws_frame: RFC 6455 framing for the server.
 *
 * The reader is a byte-driven state machine, so where the network cut the
 * stream never matters: the same bytes give the same events and the same
 * error at the same byte, whether they come whole or one at a time. A frame
 * header (2 to 14 bytes) is gathered in a small array and checked in three
 * steps, each as soon as its bytes are in: the first two bytes (bits,
 * opcode, mask flag, 7-bit length), the extended length, the mask key. So a
 * frame that would make the message too big is refused from its header,
 * before any of its payload is read or stored.
 *
 * Payload bytes are unmasked as they arrive (the key position is the frame
 * offset modulo 4, kept across calls). Control frame payloads go to a fixed
 * 125-byte array in the reader; they may come between the fragments of a
 * message, which keeps gathering untouched in its own buffer. That buffer
 * grows with the bytes actually received (not with what a header promised),
 * never past `max_message`, and after a message is delivered it is emptied
 * at the next call, and freed if it had grown past 4 KB: an idle connection
 * holds only the reader itself.
 *
 * Text is checked for UTF-8 as it arrives, by a small state machine that
 * survives fragment and call boundaries, so a bad byte fails the message at
 * once and a character split between fragments is still fine. The same
 * machine backs ws_utf8_valid.
 */
#include "net/ws_frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* A message buffer bigger than this is freed once its message is delivered. */
#define WS_KEEP_BUF 4096
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* Where a UTF-8 decoder is between bytes: continuation bytes still owed and
 * the range the next one must fall in (it narrows after E0, ED, F0, F4). */
struct utf8 {
  uint8_t need, lo, hi;
};

/* 0 if `c` may come next, -1 if it makes the text ill-formed. */
static int utf8_step(struct utf8 *u, uint8_t c) {
  if (u->need) {
    if (c < u->lo || c > u->hi) return -1;
    u->need--;
    u->lo = 0x80;
    u->hi = 0xBF;
    return 0;
  }
  u->lo = 0x80;
  u->hi = 0xBF;
  if (c < 0x80) return 0;
  if (c < 0xC2) return -1; /* a stray continuation, or an overlong 2-byte form */
  if (c < 0xE0) {
    u->need = 1;
  } else if (c < 0xF0) {
    u->need = 2;
    if (c == 0xE0) u->lo = 0xA0; /* overlong */
    if (c == 0xED) u->hi = 0x9F; /* surrogates */
  } else if (c < 0xF5) {
    u->need = 3;
    if (c == 0xF0) u->lo = 0x90; /* overlong */
    if (c == 0xF4) u->hi = 0x8F; /* past U+10FFFF */
  } else {
    return -1;
  }
  return 0;
}

int ws_utf8_valid(const uint8_t *s, size_t len) {
  struct utf8 u = {0, 0x80, 0xBF};
  for (size_t i = 0; i < len; i++)
    if (utf8_step(&u, s[i]) < 0) return 0;
  return u.need == 0;
}

enum rstate { R_HEADER, R_PAYLOAD };
/* The header's three parts; `hdr_need` is where the current one ends. */
enum hstage { H_BASE, H_LENGTH, H_MASK };

struct ws_reader {
  size_t max_message;
  int err, err_close;
  const char *err_text;

  enum rstate state;
  enum hstage hstage;
  uint8_t hdr[14];
  uint8_t hdr_len, hdr_need;

  /* The frame being read. */
  uint8_t op, fin, mask[4];
  uint64_t remaining, got;

  /* The data message being gathered: its opcode (0 when none is), bytes and UTF-8 state. */
  uint8_t msg_op;
  uint8_t *msg;
  size_t msg_len, msg_cap;
  struct utf8 utf8;
  int release; /* the last event was a message: empty the buffer at the next call */

  uint8_t ctl[WS_CONTROL_MAX];
};

int ws_reader_new(struct ws_reader **out, size_t max_message) {
  struct ws_reader *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  r->max_message = max_message;
  r->hdr_need = 2;
  *out = r;
  return 0;
}

void ws_reader_free(struct ws_reader *r) {
  if (!r) return;
  free(r->msg);
  free(r);
}

const char *ws_reader_error(const struct ws_reader *r) { return r->err_text ? r->err_text : ""; }

static int fail(struct ws_reader *r, int err, const char *text) {
  r->err = err;
  r->err_text = text;
  switch (err) {
  case -EILSEQ: r->err_close = WS_CLOSE_INVALID_DATA; break;
  case -EMSGSIZE: r->err_close = WS_CLOSE_TOO_BIG; break;
  case -ENOMEM: r->err_close = WS_CLOSE_INTERNAL_ERROR; break;
  default: r->err_close = WS_CLOSE_PROTOCOL_ERROR; break;
  }
  return err;
}

static int is_control(uint8_t op) { return op & 0x8; }

/* The first two bytes: everything but the length can be judged from them. */
static int check_base(struct ws_reader *r) {
  uint8_t b0 = r->hdr[0], b1 = r->hdr[1];
  r->fin = b0 >> 7;
  r->op = b0 & 0x0F;
  if (b0 & 0x70) return fail(r, -EPROTO, "reserved bits set");
  if (!(b1 & 0x80)) return fail(r, -EPROTO, "unmasked frame");
  switch (r->op) {
  case WS_OP_CONTINUATION:
    if (!r->msg_op) return fail(r, -EPROTO, "continuation outside a message");
    break;
  case WS_OP_TEXT:
  case WS_OP_BINARY:
    if (r->msg_op) return fail(r, -EPROTO, "new message inside a fragmented one");
    break;
  case WS_OP_CLOSE:
  case WS_OP_PING:
  case WS_OP_PONG:
    if (!r->fin) return fail(r, -EPROTO, "fragmented control frame");
    if ((b1 & 0x7F) > WS_CONTROL_MAX) return fail(r, -EPROTO, "control frame too long");
    break;
  default: return fail(r, -EPROTO, "unknown opcode");
  }
  uint8_t len7 = b1 & 0x7F;
  r->hdr_need = len7 == 127 ? 10 : len7 == 126 ? 4 : 2;
  return 0;
}

/* The length is known: refuse a message that would outgrow the limit before storing any of it. */
static int check_length(struct ws_reader *r) {
  uint8_t len7 = r->hdr[1] & 0x7F;
  uint64_t len = len7;
  if (len7 >= 126) {
    len = 0;
    for (uint8_t i = 2; i < r->hdr_need; i++) len = len << 8 | r->hdr[i];
    if (len >> 63) return fail(r, -EPROTO, "length has its top bit set");
  }
  if (!is_control(r->op) && len > r->max_message - r->msg_len)
    return fail(r, -EMSGSIZE, "message too big");
  r->remaining = len;
  r->got = 0;
  return 0;
}

/* Advances through the header's parts as their bytes complete; 0 or an error. */
static int header_advance(struct ws_reader *r) {
  int rc = 0;
  while (rc == 0 && r->state == R_HEADER && r->hdr_len == r->hdr_need) {
    switch (r->hstage) {
    case H_BASE:
      rc = check_base(r);
      r->hstage = H_LENGTH;
      break;
    case H_LENGTH:
      rc = check_length(r);
      r->hstage = H_MASK;
      r->hdr_need += 4;
      break;
    case H_MASK:
      memcpy(r->mask, r->hdr + r->hdr_len - 4, 4);
      if (!is_control(r->op) && r->op != WS_OP_CONTINUATION) {
        r->msg_op = r->op;
        r->utf8 = (struct utf8){0, 0x80, 0xBF};
      }
      r->state = R_PAYLOAD;
      r->hstage = H_BASE;
      r->hdr_len = 0;
      r->hdr_need = 2;
      break;
    }
  }
  return rc;
}

/* Room for `n` more message bytes; the header check already bounded the total by max_message. */
static int msg_reserve(struct ws_reader *r, size_t n) {
  size_t need = r->msg_len + n;
  if (need <= r->msg_cap) return 0;
  size_t cap = r->msg_cap ? r->msg_cap : 256;
  while (cap < need) cap *= 2;
  if (cap > r->max_message) cap = r->max_message;
  uint8_t *p = realloc(r->msg, cap);
  if (!p) return fail(r, -ENOMEM, "out of memory");
  r->msg = p;
  r->msg_cap = cap;
  return 0;
}

/* Unmasks `n` payload bytes into place, checking text as it comes. */
static int take_payload(struct ws_reader *r, const uint8_t *in, size_t n) {
  uint8_t *dst;
  if (is_control(r->op)) {
    dst = r->ctl + r->got;
  } else {
    int rc = msg_reserve(r, n);
    if (rc < 0) return rc;
    dst = r->msg + r->msg_len;
    r->msg_len += n;
  }
  for (size_t i = 0; i < n; i++) dst[i] = in[i] ^ r->mask[(r->got + i) & 3];
  r->got += n;
  r->remaining -= n;
  if (r->msg_op == WS_OP_TEXT && !is_control(r->op))
    for (size_t i = 0; i < n; i++)
      if (utf8_step(&r->utf8, dst[i]) < 0) return fail(r, -EILSEQ, "text is not UTF-8");
  return 0;
}

static int close_code_allowed(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

static int close_event(struct ws_reader *r, struct ws_event *ev) {
  size_t n = (size_t)r->got;
  ev->close_code = WS_CLOSE_NO_STATUS;
  ev->reason = (const char *)r->ctl;
  ev->reason_len = 0;
  if (n == 0) return 1;
  if (n == 1) return fail(r, -EPROTO, "close payload of one byte");
  ev->close_code = r->ctl[0] << 8 | r->ctl[1];
  if (!close_code_allowed(ev->close_code)) return fail(r, -EPROTO, "close code not allowed");
  if (!ws_utf8_valid(r->ctl + 2, n - 2)) return fail(r, -EILSEQ, "close reason is not UTF-8");
  ev->reason = (const char *)r->ctl + 2;
  ev->reason_len = n - 2;
  return 1;
}

/* A frame's payload is all in: 1 with *ev filled, 0 when the message goes on, or an error. */
static int frame_done(struct ws_reader *r, struct ws_event *ev) {
  r->state = R_HEADER;
  memset(ev, 0, sizeof *ev);
  if (is_control(r->op)) {
    ev->op = (enum ws_opcode)r->op;
    ev->data = r->ctl;
    ev->len = (size_t)r->got;
    return r->op == WS_OP_CLOSE ? close_event(r, ev) : 1;
  }
  if (!r->fin) return 0;
  if (r->msg_op == WS_OP_TEXT && r->utf8.need)
    return fail(r, -EILSEQ, "text ends inside a UTF-8 character");
  ev->op = (enum ws_opcode)r->msg_op;
  ev->data = r->msg ? r->msg : r->ctl; /* a valid pointer even for an empty message */
  ev->len = r->msg_len;
  r->msg_op = 0;
  r->release = 1;
  return 1;
}

/* The delivered message's bytes are no longer promised: keep a small buffer, drop a big one. */
static void release_message(struct ws_reader *r) {
  r->release = 0;
  r->msg_len = 0;
  if (r->msg_cap > WS_KEEP_BUF) {
    free(r->msg);
    r->msg = NULL;
    r->msg_cap = 0;
  }
}

int ws_reader_feed(struct ws_reader *r, const uint8_t *data, size_t len, size_t *used,
                   struct ws_event *ev, int *close_code) {
  size_t pos = 0;
  int rc = r->err; /* after an error, nothing more is taken */
  if (rc == 0 && r->release) release_message(r);
  /* A zero-length frame is an event as soon as its header is in: check after every step. */
  while (rc == 0 && pos < len) {
    if (r->state == R_HEADER) {
      size_t n = r->hdr_need - r->hdr_len;
      if (n > len - pos) n = len - pos;
      memcpy(r->hdr + r->hdr_len, data + pos, n);
      r->hdr_len += (uint8_t)n;
      pos += n;
      rc = header_advance(r);
    } else {
      size_t n = len - pos;
      if (n > r->remaining) n = (size_t)r->remaining;
      rc = take_payload(r, data + pos, n);
      pos += n;
    }
    if (rc == 0 && r->state == R_PAYLOAD && r->remaining == 0) rc = frame_done(r, ev);
  }
  *used = pos; /* on an error, the bytes up to and including the one that broke the protocol */
  if (rc < 0) *close_code = r->err_close;
  return rc;
}

size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], enum ws_opcode opcode, uint64_t len) {
  out[0] = (uint8_t)(0x80 | (opcode & 0x0F));
  if (len < 126) {
    out[1] = (uint8_t)len;
    return 2;
  }
  if (len <= 0xFFFF) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
  return 10;
}

size_t ws_close_payload(uint8_t out[WS_CONTROL_MAX], int code, const char *reason) {
  out[0] = (uint8_t)(code >> 8);
  out[1] = (uint8_t)code;
  size_t n = reason ? strlen(reason) : 0;
  if (n > WS_CONTROL_MAX - 2) {
    n = WS_CONTROL_MAX - 2;
    /* Back off continuation bytes so the cut falls before a character, not inside one. */
    while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80) n--;
  }
  if (n) memcpy(out + 2, reason, n);
  return 2 + n;
}

static int is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

int ws_accept_key(const char *key, char out[29]) {
  if (!key) return -EINVAL;
  while (*key == ' ' || *key == '\t') key++;
  size_t n = strlen(key);
  while (n > 0 && (key[n - 1] == ' ' || key[n - 1] == '\t')) n--;
  /* 16 bytes are 22 base64 characters and "==" of padding, nothing else. */
  if (n != 24 || key[22] != '=' || key[23] != '=') return -EINVAL;
  for (size_t i = 0; i < 22; i++)
    if (!is_base64_char(key[i])) return -EINVAL;
  unsigned char raw[18];
  if (EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18) return -EINVAL;

  unsigned char buf[24 + sizeof WS_GUID - 1], md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  memcpy(buf, key, 24);
  memcpy(buf + 24, WS_GUID, sizeof WS_GUID - 1);
  if (!EVP_Digest(buf, sizeof buf, md, &md_len, EVP_sha1(), NULL) || md_len != 20) return -EINVAL;
  EVP_EncodeBlock((unsigned char *)out, md, 20);
  out[28] = '\0';
  return 0;
}
