/*
 * ws_frame: RFC 6455 framing, the server's side of it.
 *
 * A reader takes the bytes a client sent, in whatever pieces the network
 * cut them, and gives back whole messages and control frames. It holds the
 * client to the protocol: every frame masked (section 5.1), no reserved bits
 * (no extension is ever negotiated), no unknown opcode, control frames short
 * and unfragmented, continuations only inside a fragmented message, text
 * that is UTF-8 (section 8.1), close codes that may be sent (section 7.4).
 * A breach is an error carrying the close code to answer with; after one the
 * reader takes nothing more.
 *
 * The writer side is a frame header (servers never mask) and the payload of
 * a close frame. The handshake's accept key is here too.
 */
#ifndef TS_NET_WS_FRAME_H
#define TS_NET_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
  WS_OP_CONTINUATION = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xA,
};

/* Close codes (RFC 6455 section 7.4.1) the server sends. */
enum ws_close_code {
  WS_CLOSE_NORMAL = 1000,
  WS_CLOSE_GOING_AWAY = 1001,
  WS_CLOSE_PROTOCOL_ERROR = 1002,
  WS_CLOSE_UNSUPPORTED_DATA = 1003,
  WS_CLOSE_NO_STATUS = 1005, /* only ever reported, never sent */
  WS_CLOSE_INVALID_DATA = 1007,
  WS_CLOSE_POLICY = 1008,
  WS_CLOSE_TOO_BIG = 1009,
  WS_CLOSE_INTERNAL_ERROR = 1011,
};

/* The largest control frame payload (section 5.5). */
#define WS_CONTROL_MAX 125
/* A frame header is 2 to 14 bytes; the server's, unmasked, at most 10. */
#define WS_HEADER_MAX 10

/* What a reader gives back. */
struct ws_event {
  enum ws_opcode op;        /* WS_OP_TEXT, WS_OP_BINARY, WS_OP_CLOSE, WS_OP_PING or WS_OP_PONG */
  const uint8_t *data;      /* the whole message or control payload; valid until the next feed */
  size_t len;
  /* WS_OP_CLOSE: the code the client sent (WS_CLOSE_NO_STATUS when it sent none) and its
   * reason (UTF-8, not NUL-terminated, `reason_len` bytes). */
  int close_code;
  const char *reason;
  size_t reason_len;
};

struct ws_reader;

/*
 * A reader for one connection; `max_message` bounds a message (all its
 * fragments together). 0 or -ENOMEM.
 */
int ws_reader_new(struct ws_reader **out, size_t max_message);
void ws_reader_free(struct ws_reader *r);

/*
 * Takes bytes from `data` until an event is complete or the bytes run out,
 * and says how many it took in *used. Returns 1 with *ev filled (the rest
 * of `data` is for the next call), 0 when everything was taken and no event
 * is complete yet, or a negative error with *close_code set to what to close
 * with: -EPROTO (WS_CLOSE_PROTOCOL_ERROR), -EILSEQ (WS_CLOSE_INVALID_DATA),
 * -EMSGSIZE (WS_CLOSE_TOO_BIG), -ENOMEM (WS_CLOSE_INTERNAL_ERROR). After an
 * error every call returns it again. A message's bytes are held in the
 * reader until the event, so memory is bounded by `max_message`.
 */
int ws_reader_feed(struct ws_reader *r, const uint8_t *data, size_t len, size_t *used,
                   struct ws_event *ev, int *close_code);

/* A short, fixed description of the last error for logs ("unmasked frame"); "" if none. */
const char *ws_reader_error(const struct ws_reader *r);

/*
 * Writes the header of a final, unmasked frame of `opcode` carrying `len`
 * payload bytes into `out` and returns its length (2, 4 or 10).
 */
size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], enum ws_opcode opcode, uint64_t len);

/*
 * The payload of a close frame: the code, then as much of `reason` as fits
 * in WS_CONTROL_MAX without cutting a UTF-8 character. Returns its length.
 */
size_t ws_close_payload(uint8_t out[WS_CONTROL_MAX], int code, const char *reason);

/*
 * Sec-WebSocket-Accept for a Sec-WebSocket-Key (section 4.2.2): `key` must
 * be the base64 of 16 bytes (24 characters, surrounding blanks ignored).
 * Writes 28 characters and a NUL; 0 or -EINVAL.
 */
int ws_accept_key(const char *key, char out[29]);

/* 1 if `s` of `len` bytes is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
int ws_utf8_valid(const uint8_t *s, size_t len);

#endif
