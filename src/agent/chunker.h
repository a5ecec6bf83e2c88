/*
 * chunker: cuts a stream of LLM text into sentences as it arrives, so the
 * first sentence can be spoken while the rest is still being written.
 *
 * A sentence ends at . ! ? ; (followed by space or the end), at the
 * Chinese/Japanese 。！？；, or at a newline; "Dr.", "e.g.", "3.14" and
 * similar do not end one. A very short first piece is joined to the next
 * one so TTS is not asked for "Hi." alone when more follows at once; a run
 * with no end in sight is cut at a comma (，、, too) once it grows long, so
 * speech starts soon. Markdown that cannot be spoken (*, #, `, list
 * bullets) is dropped.
 *
 * "Short" and "long" are fixed sizes, never a matter of timing: the pieces
 * depend only on the text, not on how it was split, so a piece can wait for
 * the next token when the text so far does not decide it ("3." or "3.14"?).
 * Emitted sentences are trimmed, with white space collapsed, and valid UTF-8.
 * emit may call chunker_reset, not chunker_free.
 */
#ifndef TS_AGENT_CHUNKER_H
#define TS_AGENT_CHUNKER_H

#include <stddef.h>

struct chunker;

typedef void (*chunker_emit)(void *user, const char *sentence);

int chunker_new(struct chunker **out);
void chunker_free(struct chunker *c);

/* Appends streamed text (UTF-8, any split); calls emit for each sentence completed. */
void chunker_push(struct chunker *c, const char *text, chunker_emit emit, void *user);
/* End of the stream: emits what is left, if anything but whitespace. */
void chunker_flush(struct chunker *c, chunker_emit emit, void *user);
/* Forgets everything buffered (the reply was cancelled). */
void chunker_reset(struct chunker *c);

#endif
