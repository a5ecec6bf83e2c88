/*
 * llm_stream: the life of one streamed reply from a chat service, shared by
 * the LLM backends that speak Server-Sent Events over HTTP (OpenAI-style
 * chat completions, Anthropic Messages).
 *
 * Those backends differ only in the request they send and in what their
 * events mean; everything else is the same and lives here: the job and its
 * HTTP call, the SSE parser fed as bytes arrive, tokens and the end of the
 * reply posted home, and the one error message for a stream that went
 * wrong (a bad event, a body that is not an event stream, a stream cut off,
 * or the HTTP failure itself, always without the key).
 *
 * A protocol supplies its request builder and an event handler. The
 * handler runs on the control loop and reports through llm_stream_token,
 * llm_stream_end (the reply is over: done goes home now),
 * llm_stream_complete (the reply is whole; done goes home when the body
 * ends cleanly) and llm_stream_fail (returns the value to hand back, which
 * stops the transfer).
 */
#ifndef TS_ENGINES_LLM_STREAM_H
#define TS_ENGINES_LLM_STREAM_H

#include <stddef.h>

#include "engines/service.h"
#include "net/sse.h"

struct llm_stream;

struct llm_stream_proto {
  const struct llm_backend *be;
  const char *end_event; /* names the missing end in "the stream was cut off before ..." */
  int (*build)(const struct svc_conf *c, const struct llm_params *p, struct http_request *out);
  /* Control loop, per event, until the reply ended. Non-zero stops the transfer. */
  int (*event)(struct llm_stream *s, const struct sse_event *ev);
};

/* Opens a backend's engine: its svc_conf with the llm_* settings, warmed. */
int llm_stream_open(void **out, const struct engine_env *env, const char *service, const char *default_base,
                    const char *default_model, const char *default_key_env, char *err, size_t errlen);
void llm_stream_close(void *engine);

/* A backend's generate: `engine` is what llm_stream_open made. */
int llm_stream_generate(const struct llm_stream_proto *proto, void *engine, const struct llm_params *p,
                        struct mailbox *home, const struct llm_cb *cb, struct llm_job **out);

/* ---- for the event handler (control loop) ---- */

void llm_stream_token(struct llm_stream *s, const char *text);
void llm_stream_end(struct llm_stream *s);
void llm_stream_complete(struct llm_stream *s);
/* Records "<service>: <what>" as the error and returns -EBADMSG. */
int llm_stream_fail(struct llm_stream *s, const char *what);

#endif
