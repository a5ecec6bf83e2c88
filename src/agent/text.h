/*
 * text: a string on the heap at its own size, with a cap.
 *
 * The voice agent keeps several texts per call (the caller's turn, the
 * words before a pause, the live partial, the reply so far) that may be up
 * to a few KB long but are mostly short or empty. As fixed arrays they were
 * most of the agent's memory per call; here each holds only what it says,
 * grows as it is written and is given back when it is cleared.
 *
 * Like snprintf() into an array of max + 1 bytes, what does not fit is cut
 * at `max` bytes (not at a character: callers that care step back
 * themselves, as before). A write that would need more memory than can be
 * had returns -ENOMEM and leaves the text as it was.
 */
#ifndef TS_AGENT_TEXT_H
#define TS_AGENT_TEXT_H

#include <stddef.h>

struct text {
  char *s;    /* NULL while nothing is held: text_str() gives "" */
  size_t len; /* bytes held, without the NUL */
  size_t cap; /* bytes allocated */
  size_t max; /* the longest it may be, in bytes */
};

/* An empty text that holds at most `max` bytes; nothing is allocated. */
void text_init(struct text *t, size_t max);
/* Empties it and gives its memory back; it stays usable. */
void text_clear(struct text *t);

/* Its content, never NULL; valid until the next write. */
const char *text_str(const struct text *t);
size_t text_len(const struct text *t);

/* Replaces the content with `s`; `s` may point into the text itself. 0 or -ENOMEM. */
int text_set(struct text *t, const char *s);
/* Adds `s` at the end, cut at the cap; `s` may point into the text itself. 0 or -ENOMEM. */
int text_append(struct text *t, const char *s);
/* Replaces the content with a, a space and b (the space only when both have words),
 * cut at the cap; either may point into the text itself. 0 or -ENOMEM. */
int text_join(struct text *t, const char *a, const char *b);

#endif
