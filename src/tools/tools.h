/*
 * tools: what the AI can do during a call besides talk.
 *
 * The operator declares tools in `tools_file` (webhooks and built-ins) and
 * names MCP servers in `mcp_servers`; the registry is opened once at start
 * (a bad file stops the server with a message naming the tool and field),
 * shared by every call, and offered to the LLM with each request. Tool URLs
 * come only from this configuration, never from a caller or the model.
 *
 * Calling a tool is an engine-style job (engines/job.h): started on the
 * call's loop, run elsewhere (webhooks and MCP on the control loop, where
 * the HTTP client lives), its result posted home; releasing it cancels it
 * and no callback follows. Every call ends in exactly one result: what the
 * tool answered (JSON text), or an error the model is told about (a
 * timeout, a non-2xx answer, an answer too large or not JSON, an unknown
 * tool, arguments that are not a JSON object).
 */
#ifndef TS_TOOLS_TOOLS_H
#define TS_TOOLS_TOOLS_H

#include <stddef.h>

#include "engines/engine.h"
#include "engines/job.h"
#include "engines/llm.h"

struct tools;
struct prom_buf;

/* A webhook's answer, at most this many bytes; a longer one is an error result. */
#define TOOLS_RESULT_MAX (64 * 1024)

/* Reads cfg->tools_file and starts discovery on cfg->mcp_servers. Control loop. */
int tools_open(struct tools **out, const struct engine_env *env, char *err, size_t errlen);
/* Control loop; calls in flight end without a callback. NULL is fine. */
void tools_close(struct tools *t);

/*
 * The tools to offer now: a snapshot (an MCP server's list may change
 * while a call runs) that stays valid until released. Any thread.
 * *n = 0 (and a list that is still released) when there are none.
 */
struct tools_list;
int tools_snapshot(struct tools *t, struct tools_list **out);
const struct llm_tool *tools_list_items(const struct tools_list *l, size_t *n);
void tools_list_release(struct tools_list *l);

enum tools_kind { TOOLS_UNKNOWN, TOOLS_WEBHOOK, TOOLS_MCP, TOOLS_END_CALL, TOOLS_GET_TIME };
/* What `name` is; any thread. */
enum tools_kind tools_kind(struct tools *t, const char *name);
/* The tool's say_while_running phrase, copied into buf; 0, or -ENOENT when it has none. */
int tools_filler(struct tools *t, const char *name, char *buf, size_t cap);

struct tool_request {
  const char *call_id;   /* the phone call's id */
  int turn;              /* the caller's turn it answers */
  const char *tool;
  const char *arguments; /* JSON text, as the model gave it */
  const char *tool_call_id; /* the model's id for this call */
};

struct tool_cb {
  /* Exactly once: `json` is the result as JSON text; is_error = 1 when it failed
   * (json is then {"error": "..."} in words the model can repeat politely). */
  void (*result)(void *user, const char *json, int is_error);
  void *user;
};

struct tool_job;

/* Home thread. Fails only for out-of-memory; an unknown tool is an error result (with
 * t == NULL every tool is unknown). */
int tools_call(struct tools *t, const struct tool_request *r, struct mailbox *home,
               const struct tool_cb *cb, struct tool_job **out);
/* Home thread: cancels; no callback after this. NULL is fine. */
void tool_release(struct tool_job *j);

/* Calls, errors and latency per tool. Any thread. */
void tools_write_metrics(const struct tools *t, struct prom_buf *b);

/*
 * The X-Tingshuo-Signature value of a webhook body sent at unix time `t`:
 * "t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with secret>". Returns 0,
 * or -ENOSPC when out (cap bytes; 80 are enough) is too small.
 */
int tools_sign(const char *secret, long long t, const char *body, size_t len, char *out, size_t cap);

#endif
