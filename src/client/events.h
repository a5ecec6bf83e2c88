/*
 * events: the server's messages as one line of text each, for people
 * watching a call from a terminal, and the figures a benchmark takes from
 * them.
 */
#ifndef TS_CLIENT_EVENTS_H
#define TS_CLIENT_EVENTS_H

#include <jansson.h>
#include <stddef.h>

/*
 * One line (no newline) for `msg`, e.g. `transcript (final): "what time is
 * it"` or `latency turn 2: voice_to_voice 812 ms, endpoint 500 ms, ...`.
 * Returns 0, or -ENOENT for messages not worth a line (level meters).
 */
int events_format(const json_t *msg, char *out, size_t cap);

/* The figures of a `latency` event; -1 for each one absent. */
struct events_latency {
  int turn;
  double endpoint_ms, voice_to_voice_ms, barge_in_ms, overhead_ms;
};
int events_latency(const json_t *msg, struct events_latency *lat);

/* A `reply` event: 1 when it says interrupted=true, 0 when not, -EINVAL when not a reply. */
int events_reply_interrupted(const json_t *msg);

#endif
