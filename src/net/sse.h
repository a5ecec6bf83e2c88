/*
 * sse: an incremental parser of Server-Sent Events (text/event-stream), the
 * framing streaming LLM APIs use for their tokens.
 *
 * Bytes are fed as they come off the network, split anywhere (inside a
 * line, between CR and LF, inside a UTF-8 character); each complete event
 * is handed to the callback. It follows the WHATWG event-stream rules:
 * lines end with CRLF, LF or CR; `event`, `data`, `id` fields; `data` lines
 * of one event are joined with "\n"; lines starting with ':' are comments;
 * an empty line dispatches; an event with no data is not dispatched.
 */
#ifndef TS_NET_SSE_H
#define TS_NET_SSE_H

#include <stddef.h>

/* The longest line or event accepted; a longer one is an error (-EMSGSIZE). */
#define SSE_MAX_EVENT (1024 * 1024)

struct sse_event {
  const char *type; /* "message" unless an `event` field named it */
  const char *data; /* NUL-terminated; may contain "\n" */
  size_t data_len;
  const char *id;   /* the last event id seen so far, "" if none */
};

/* Returns 0 to go on; anything else stops sse_feed, which returns it. */
typedef int (*sse_event_cb)(void *user, const struct sse_event *ev);

struct sse_parser;

int sse_parser_new(struct sse_parser **out, sse_event_cb cb, void *user);
void sse_parser_free(struct sse_parser *p);

/* Forgets any partial line or event (for a new stream). */
void sse_parser_reset(struct sse_parser *p);

/*
 * Parses `len` bytes. Returns 0, the callback's non-zero result, -EMSGSIZE
 * for an oversized line or event, or -ENOMEM.
 */
int sse_feed(struct sse_parser *p, const char *buf, size_t len);

/* Events dispatched since the last reset. */
size_t sse_events(const struct sse_parser *p);

/* 1 when bytes of an unfinished line or event are pending (a cut-off stream). */
int sse_pending(const struct sse_parser *p);

#endif
