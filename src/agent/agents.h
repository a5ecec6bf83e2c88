/*
 * agents: the agents a call can be answered by, each behind the media
 * layer's table of operations (media/agent.h), found by the name the
 * `agent` setting gives.
 */
#ifndef TS_AGENT_AGENTS_H
#define TS_AGENT_AGENTS_H

#include "media/agent.h"

extern const struct agent_ops voice_agent_ops; /* agent/voice_ops.c */
extern const struct agent_ops echo_agent_ops;  /* agent/echo.c */

/* The agent called `name` ("voice", "echo"); NULL when there is none. */
const struct agent_ops *agent_ops_find(const char *name);

#endif
