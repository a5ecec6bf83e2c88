/*
 * toolfile: reading and checking `tools_file` (docs/tools.md).
 *
 * The file is the operator's word on what the AI may do, so it is checked
 * whole at start and any doubt stops the server: a typo in a field name
 * silently ignored would be a tool that behaves other than its author
 * thinks. Every message names the tool (its place in the list, counted
 * from 1, and its name) and the field.
 */
#ifndef TS_TOOLS_TOOLFILE_H
#define TS_TOOLS_TOOLFILE_H

#include <stddef.h>

#include "tools/tools.h"

#define TOOLFILE_MAX_TOOLS 128
#define TOOLFILE_MAX_HEADERS 12       /* configured per webhook (the request adds its own) */
#define TOOLFILE_MAX_TIMEOUT_MS 60000

struct tool_def {
  enum tools_kind kind; /* TOOLS_WEBHOOK, TOOLS_END_CALL or TOOLS_GET_TIME */
  char *name;
  char *description;
  char *parameters;     /* JSON Schema text of the arguments object */
  char *filler;         /* say_while_running; NULL when none */
  /* TOOLS_WEBHOOK */
  char *url;
  char *headers[TOOLFILE_MAX_HEADERS]; /* "Name: value", the values resolved from the environment */
  size_t nheaders;
  int timeout_ms;
};

struct toolfile {
  struct tool_def *defs;
  size_t n;
};

/* Fills out (zeroed first); on failure out holds nothing and err says why. */
int toolfile_load(struct toolfile *out, const char *path, int default_timeout_ms, char *err,
                  size_t errlen);
void toolfile_free(struct toolfile *f);

/* ^[a-zA-Z0-9_-]{1,64}$: what both OpenAI and Anthropic accept as a tool name. */
int toolfile_name_ok(const char *name);

#endif
