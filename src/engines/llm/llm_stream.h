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
 *
 * Tool calls come in pieces too: a call begins (its id and name), its
 * arguments arrive as fragments of JSON text, and it is complete at a point
 * each service names (Anthropic: the end of its content block; OpenAI: the
 * finish_reason, since parallel calls may interleave). The handler names a
 * call by a key of its own (the service's index); this file keeps the
 * pieces, bounds them (LLM_TOOL_CALLS_MAX calls, LLM_TOOL_ARGS_MAX bytes of
 * arguments each: beyond is an error for the reply, not a truncated call)
 * and posts each complete call home, in order, ahead of done.
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

/* ---- tool calls (control loop) ---- */

#define LLM_TOOL_CALLS_MAX 16
#define LLM_TOOL_ARGS_MAX 65536
#define LLM_TOOL_NAME_MAX 256 /* an id or a name; services use 64 at most */

/* The key of the call with this id; for a NULL id the last call's. A new id
 * (or no call yet) gets a fresh key, below any index a service uses. For
 * services that leave out a call's index. */
long llm_stream_tool_key(struct llm_stream *s, const char *id);
/* Call `key` begins, or gets the id and name it lacked; NULLs fill nothing.
 * These return 0, or llm_stream_fail's value when a bound is passed. */
int llm_stream_tool_begin(struct llm_stream *s, long key, const char *id, const char *name);
/* More of call `key`'s arguments (the call begins if it had not). */
int llm_stream_tool_args(struct llm_stream *s, long key, const char *piece, size_t len);
/* Call `key` is complete: home it goes (nothing when there is no such call, or it went). */
int llm_stream_tool_finish(struct llm_stream *s, long key);
/* Every call not yet sent goes home, in the order they began. */
int llm_stream_tools_flush(struct llm_stream *s);

/* ---- request helpers shared by the builders ---- */

/* A tool's parameters as a JSON object (a new reference): its schema, or an
 * empty object schema when it has none; NULL when it is not a JSON object. */
json_t *llm_tool_schema(const struct llm_tool *t);
/* Whether turn i (LLM_TOOL) answers a call of the assistant turn just
 * before its round. A result whose call fell out of the history window
 * would make the service refuse the whole request, so builders drop it. */
int llm_turn_answers(const struct llm_params *p, size_t i);
/* The last turn of the round that assistant turn `a` begins (its results
 * follow it; `a` itself when none do). */
size_t llm_round_end(const struct llm_params *p, size_t a);
/* Whether call `id` of assistant turn `a` has a result in its round. A call
 * without one (the conversation moved on while its tool ran) would also make
 * the service refuse the request, so builders add LLM_NO_RESULT for it,
 * marked as an error, at the end of the round. */
int llm_call_answered(const struct llm_params *p, size_t a, const char *id);
#define LLM_NO_RESULT "{\"error\":\"no result: the conversation went on before the tool finished\"}"

/* The usage recorded so far (zeros before any), and a new record of it. */
struct llm_usage llm_stream_usage(const struct llm_stream *s);
void llm_stream_set_usage(struct llm_stream *s, const struct llm_usage *u);

#endif
