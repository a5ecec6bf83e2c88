/*
 * One call's tool rounds.
 *
 * A round is at most TOOLRUN_MAX_CALLS calls. The model's calls arrive
 * one by one while its reply streams; they are copied, because the
 * backend's strings live only for the callback. Starting the round writes
 * it into the history first (the calls, then results as they come), so
 * the history is in the shape both chat APIs require whatever happens
 * next: a result always follows its call, and nothing else comes between
 * a round's calls and its results (settle() closes a round that the
 * caller left behind before anything else is added).
 *
 * Events carry the arguments and results as JSON values when they parse,
 * as strings otherwise, so a page shows what the model really sent.
 */
#include "agent/toolrun.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/log.h"
#include "tools/tools.h"

#define TOOLRUN_MAX_CALLS 16

enum pstate { P_COLLECTED, P_RUNNING, P_DONE };

struct pending {
  struct toolrun *run;
  char *id, *name, *args;
  struct tool_job *job;
  enum pstate state;
  double started_ms;
};

struct toolrun {
  struct tools *tools;
  struct mailbox *home;
  char call_id[40];
  struct history *hist;
  struct toolrun_host host;
  struct pending calls[TOOLRUN_MAX_CALLS];
  size_t n;
  int turn, running, rounds, ending, detached;
};

static double now_ms(void) { return (double)uv_hrtime() / 1e6; }

int toolrun_new(struct toolrun **out, struct tools *tools, struct mailbox *home,
                const char *call_id, struct history *hist, const struct toolrun_host *host) {
  struct toolrun *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  r->tools = tools;
  r->home = home;
  snprintf(r->call_id, sizeof r->call_id, "%s", call_id);
  r->hist = hist;
  r->host = *host;
  for (size_t i = 0; i < TOOLRUN_MAX_CALLS; i++) r->calls[i].run = r;
  *out = r;
  return 0;
}

static void pending_clear(struct pending *p) {
  tool_release(p->job);
  free(p->id);
  free(p->name);
  free(p->args);
  *p = (struct pending){.run = p->run};
}

/* The round's slots, for the next one. */
static void clear_round(struct toolrun *r) {
  for (size_t i = 0; i < r->n; i++) pending_clear(&r->calls[i]);
  r->n = 0;
  r->running = 0;
}

void toolrun_free(struct toolrun *r) {
  if (!r) return;
  clear_round(r);
  free(r);
}

void toolrun_begin_reply(struct toolrun *r) {
  toolrun_settle(r); /* what a left-behind round did not answer by now, it never will */
  clear_round(r);
  r->rounds = r->ending = 0;
  r->detached = 0;
}

int toolrun_add(struct toolrun *r, const struct llm_tool_call *call) {
  if (r->running) toolrun_settle(r); /* a new round cannot start over a running one */
  if (r->n && r->calls[0].state != P_COLLECTED) clear_round(r);
  if (r->n == TOOLRUN_MAX_CALLS) return -ENOSPC;
  struct pending *p = &r->calls[r->n];
  p->id = strdup(call->id ? call->id : "");
  p->name = strdup(call->name ? call->name : "");
  p->args = strdup(call->arguments && call->arguments[0] ? call->arguments : "{}");
  if (!p->id || !p->name || !p->args) {
    pending_clear(p);
    return -ENOMEM;
  }
  p->state = P_COLLECTED;
  r->n++;
  return 0;
}

size_t toolrun_collected(const struct toolrun *r) {
  return r->n && r->calls[0].state == P_COLLECTED ? r->n : 0;
}

/* A JSON value if `text` parses as one, else the text as a string. */
static json_t *as_json(const char *text) {
  json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
  return v ? v : json_string(text);
}

static void emit(struct toolrun *r, json_t *ev) {
  if (ev) r->host.event(r->host.user, ev);
}

static void emit_call(struct toolrun *r, const struct pending *p) {
  emit(r, json_pack("{s:s,s:i,s:s,s:s,s:o}", "type", "tool_call", "turn", r->turn, "tool", p->name,
                    "tool_call_id", p->id, "arguments", as_json(p->args)));
}

/* The result of p goes into the history and out as an event; the call is done. */
static void finish(struct toolrun *r, struct pending *p, const char *json, int is_error) {
  double ms = p->started_ms > 0 ? now_ms() - p->started_ms : 0;
  history_add_tool_result(r->hist, p->id, p->name, json, is_error);
  emit(r, json_pack("{s:s,s:i,s:s,s:s,s:b,s:o,s:i}", "type", "tool_result", "turn", r->turn, "tool",
                    p->name, "tool_call_id", p->id, "is_error", is_error, "result", as_json(json),
                    "ms", (int)(ms + 0.5)));
  log_call_info("agent", r->call_id, "tool %s %s in %.0f ms", p->name, is_error ? "failed" : "answered",
                ms);
  p->state = P_DONE;
}

static void on_result(void *user, const char *json, int is_error) {
  struct pending *p = user;
  struct toolrun *r = p->run;
  struct tool_job *job = p->job;
  p->job = NULL;
  finish(r, p, json, is_error);
  tool_release(job);
  if (--r->running == 0 && !r->detached) r->host.round_done(r->host.user);
}

static int start_one(struct toolrun *r, struct pending *p) {
  emit_call(r, p);
  p->started_ms = now_ms();
  if (r->tools && tools_kind(r->tools, p->name) == TOOLS_END_CALL) {
    r->ending = 1;
    finish(r, p, "{\"ok\": true}", 0);
    return 0;
  }
  struct tool_request req = {.call_id = r->call_id, .turn = r->turn, .tool = p->name,
                             .arguments = p->args, .tool_call_id = p->id};
  struct tool_cb cb = {on_result, p};
  if (!r->tools || tools_call(r->tools, &req, r->home, &cb, &p->job) != 0) {
    finish(r, p, "{\"error\": \"This tool is not available.\"}", 1);
    return 0;
  }
  p->state = P_RUNNING;
  return 1;
}

int toolrun_start(struct toolrun *r, const char *said, int turn) {
  size_t n = toolrun_collected(r);
  if (n == 0) return 0;
  struct llm_tool_call calls[TOOLRUN_MAX_CALLS];
  for (size_t i = 0; i < n; i++)
    calls[i] = (struct llm_tool_call){r->calls[i].id, r->calls[i].name, r->calls[i].args};
  r->turn = turn;
  r->rounds++;
  history_add_tool_calls(r->hist, said ? said : "", calls, n);
  /* Counted before any starts, so that no result can see zero while others start. */
  r->running = (int)n;
  int running = 0;
  for (size_t i = 0; i < n; i++) running += start_one(r, &r->calls[i]);
  r->running = running;
  return running;
}

int toolrun_running(const struct toolrun *r) { return r->running; }
int toolrun_rounds(const struct toolrun *r) { return r->rounds; }
int toolrun_ending(const struct toolrun *r) { return r->ending; }

void toolrun_filler(const struct toolrun *r, const char *language, char *buf, size_t cap) {
  for (size_t i = 0; i < r->n; i++)
    if (r->calls[i].state == P_RUNNING && r->tools &&
        tools_filler(r->tools, r->calls[i].name, buf, cap) == 0)
      return;
  toolrun_default_filler(language, buf, cap);
}

void toolrun_default_filler(const char *language, char *buf, size_t cap) {
  snprintf(buf, cap, "%s", strncmp(language, "zh", 2) == 0 ? "请稍等。" : "One moment, please.");
}

void toolrun_detach(struct toolrun *r) { r->detached = 1; }

void toolrun_settle(struct toolrun *r) {
  for (size_t i = 0; i < r->n; i++) {
    struct pending *p = &r->calls[i];
    if (p->state != P_RUNNING) continue;
    tool_release(p->job);
    p->job = NULL;
    finish(r, p, "{\"error\": \"The caller went on before this result came.\"}", 1);
  }
  r->running = 0;
}
