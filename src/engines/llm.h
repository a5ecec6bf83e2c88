/*
 * llm: the dialog engine, streaming.
 *
 * One job per reply. Text arrives as tokens (any size, UTF-8, possibly
 * split inside a word but never inside a character) and ends with exactly
 * one `done` or `error`. Callbacks run on the home loop, never inside
 * llm_generate, and never after llm_release().
 */
#ifndef TS_ENGINES_LLM_H
#define TS_ENGINES_LLM_H

#include <stddef.h>

#include "engines/engine.h"
#include "engines/job.h"

enum llm_role { LLM_USER, LLM_ASSISTANT, LLM_TOOL };

/* A tool the model may call. */
struct llm_tool {
  const char *name;
  const char *description;
  const char *parameters; /* JSON Schema of the arguments object, as JSON text */
};

/* One call the model made. */
struct llm_tool_call {
  const char *id;        /* the service's id for it (OpenAI "call_...", Anthropic "toolu_...") */
  const char *name;
  const char *arguments; /* JSON text of an object; "{}" when the model gave none */
};

/*
 * LLM_USER and LLM_ASSISTANT turns carry text. An LLM_ASSISTANT turn may
 * also carry the tool calls the model made in it (its text may then be
 * empty). An LLM_TOOL turn is the result of one call (`call_id`, `text`
 * the result as JSON text, `is_error` when it failed); the results of one
 * round follow the assistant turn that made the calls. Backends turn these
 * into each service's own shape (OpenAI: tool_calls and "tool" messages;
 * Anthropic: tool_use and tool_result blocks).
 */
struct llm_turn {
  enum llm_role role;
  const char *text;
  const struct llm_tool_call *calls; /* LLM_ASSISTANT */
  size_t ncalls;
  const char *call_id;               /* LLM_TOOL */
  const char *tool_name;             /* LLM_TOOL: the tool that was called */
  int is_error;                      /* LLM_TOOL */
};

/* Everything is copied by the backend before generate returns. */
struct llm_params {
  const char *system;            /* system prompt */
  const struct llm_turn *turns;  /* the conversation, oldest first, ending with the user */
  size_t nturns;
  const char *language;          /* the call's language, e.g. "en", "zh" */
  int max_tokens;
  double temperature;
  const struct llm_tool *tools;  /* offered to the model; none when ntools is 0 */
  size_t ntools;
};

/*
 * What a reply cost, as the service reported it (backends that report
 * nothing leave every field 0). input_tokens counts every prompt token,
 * cached_tokens those of them read from the service's prompt cache (billed
 * lower), cache_write_tokens those written to it (Anthropic bills them
 * higher; they are part of input_tokens too).
 */
struct llm_usage {
  long long input_tokens, cached_tokens, cache_write_tokens, output_tokens;
};

struct llm_cb {
  void (*token)(void *user, const char *text);
  /* Optional (NULL = not wanted): at most once per reply, before done. */
  void (*usage)(void *user, const struct llm_usage *u);
  /* Each call the model made, once its arguments are complete, in the order the
   * model made them, before done; the call and its strings are valid only during
   * the callback. A reply may carry text tokens before its calls. A backend that
   * offers no tools never calls it. */
  void (*tool_call)(void *user, const struct llm_tool_call *call);
  /* hangup = 1: the reply ends the conversation (the caller said goodbye). */
  void (*done)(void *user, int hangup);
  void (*error)(void *user, const char *message);
  void *user;
};

struct llm_backend;

struct llm_job {
  struct eng_job job;
  const struct llm_backend *be;
  struct llm_cb cb;
  /* engines.c's: the requester's callbacks, while `cb` points at its meter */
  struct llm_cb user_cb;
  struct eng_meter meter;
};

struct llm_backend {
  const char *name;
  int (*open)(void **engine, const struct engine_env *env, char *err, size_t errlen);
  void (*close)(void *engine);
  int (*generate)(void *engine, const struct llm_params *p, struct mailbox *home,
                  const struct llm_cb *cb, struct llm_job **out);
};

extern const struct llm_backend *const llm_backends[];

void llm_release(struct llm_job *j);

#endif
