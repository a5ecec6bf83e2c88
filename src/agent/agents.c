/*
 * The list of agents. A new agent adds its table here and to agents.h;
 * the media layer and the configuration's `agent` values stay as they are
 * for the rest.
 */
#include "agent/agents.h"

#include <stddef.h>
#include <string.h>

static const struct agent_ops *const all[] = {&voice_agent_ops, &echo_agent_ops};

const struct agent_ops *agent_ops_find(const char *name) {
  for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
    if (strcmp(all[i]->name, name) == 0) return all[i];
  return NULL;
}
