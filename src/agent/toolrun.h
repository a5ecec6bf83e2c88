/*
 * toolrun: the tool calls of one call's replies, for the voice agent.
 *
 * The model's calls of a round are collected as they stream in, then
 * started together (parallel calls run at once). The round goes into the
 * history as the services want it: the assistant turn with the calls, then
 * one result per call. When every result of the round is in, the host is
 * told, and asks the model again with them.
 *
 * A reply the caller interrupted while its tools ran is detached: results
 * still arriving go into the history (the caller's next question may be
 * about them) but start nothing. Before the history is sent to the model
 * again, whatever is still outstanding is settled as an error result, so
 * a call in the history always has its result right after it.
 *
 * end_call is not run anywhere: it is answered at once ({"ok": true}) and
 * noted, so the agent says goodbye and hangs up.
 *
 * Single-threaded, on the call's media worker, like the agent.
 */
#ifndef TS_AGENT_TOOLRUN_H
#define TS_AGENT_TOOLRUN_H

#include <jansson.h>
#include <stddef.h>

#include "agent/history.h"
#include "core/mailbox.h"
#include "engines/llm.h"

struct tools;
struct toolrun;

struct toolrun_host {
  /* A `tool_call` or `tool_result` event for the page and the records (ownership passes). */
  void (*event)(void *user, json_t *ev);
  /* Every result of the round is in the history (not called once detached). */
  void (*round_done)(void *user);
  void *user;
};

/* tools may be NULL (no tools: every call is an error result). */
int toolrun_new(struct toolrun **out, struct tools *tools, struct mailbox *home,
                const char *call_id, struct history *hist, const struct toolrun_host *host);
void toolrun_free(struct toolrun *r);

/* A new reply: rounds count from 0 again; a round left running is settled first. */
void toolrun_begin_reply(struct toolrun *r);

/* A call the model made in the round being streamed (copied). 0 or -ENOMEM. */
int toolrun_add(struct toolrun *r, const struct llm_tool_call *call);
/* Calls collected and not yet started. */
size_t toolrun_collected(const struct toolrun *r);

/*
 * Starts the collected calls of reply `turn`: the round goes into the
 * history with `said` (what the model said before the calls). Returns the
 * number of calls that are running; 0 when all were answered at once
 * (end_call, no tools), and then round_done is not called: the round is
 * complete on return. round_done never runs inside this call.
 */
int toolrun_start(struct toolrun *r, const char *said, int turn);

int toolrun_running(const struct toolrun *r);
/* Rounds started in this reply. */
int toolrun_rounds(const struct toolrun *r);
/* The model called end_call in this reply. */
int toolrun_ending(const struct toolrun *r);

/* What to say while the running tools work: the first one's say_while_running, else a
 * short phrase in `language`. */
void toolrun_filler(const struct toolrun *r, const char *language, char *buf, size_t cap);

/* The filler said for a tool without its own phrase. */
void toolrun_default_filler(const char *language, char *buf, size_t cap);

/* The reply is gone (interrupted, the call ending): no round_done any more. */
void toolrun_detach(struct toolrun *r);
/* Before the history goes to the model: outstanding results become errors, their jobs go. */
void toolrun_settle(struct toolrun *r);

#endif
