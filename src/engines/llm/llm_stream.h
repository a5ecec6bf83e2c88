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
 *
 * What the reply cost comes in the stream too, in each service's words; the
 * handler reads it with llm_stream_count, which takes only a plausible count,
 * so a service that sends nonsense (a string, a negative number, 10^30)
 * loses its usage, not its reply. The usage goes home once, just before done;
 * a reply that fails, or a service that reports nothing, reports no usage.
 */
#ifndef TS_ENGINES_LLM_STREAM_H
#define TS_ENGINES_LLM_STREAM_H

#include <jansson.h>
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

/* An event's JSON. Numbers are read as doubles, so a count too large for an
 * integer is a bad usage field rather than an event that is not JSON. */
json_t *llm_stream_json(const struct sse_event *ev);

/* The largest token count believed; beyond it a field is ignored. */
#define LLM_USAGE_MAX 1000000000LL

/* obj[name] when it is a whole number in 0..LLM_USAGE_MAX: stores it in *out
 * and returns 1. Anything else (absent, null, a string, a fraction, negative,
 * too large) leaves *out alone and returns 0. */
int llm_stream_count(const json_t *obj, const char *name, long long *out);

/* The usage recorded so far (zeros before any), and a new record of it. */
struct llm_usage llm_stream_usage(const struct llm_stream *s);
void llm_stream_set_usage(struct llm_stream *s, const struct llm_usage *u);

#endif
