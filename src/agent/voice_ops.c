/*
 * The voice agent as the media layer sees it: its functions behind the
 * table of media/agent.h. Each entry only retypes the agent pointer, so a
 * frame costs what a direct call did plus the indirect one.
 */
#include <errno.h>

#include "agent/agents.h"
#include "agent/voice.h"

static int voice_create(void **out, const struct agent_params *p) {
  if (!p->engines) return -EINVAL; /* it cannot answer without them */
  struct voice_agent *va = NULL;
  int rc = voice_agent_new(&va, p->call_id, p->cfg, p->engines, p->home, p->settings, p->host);
  *out = va;
  return rc;
}

static void voice_destroy(void *agent) { voice_agent_free(agent); }
static void voice_start(void *agent) { voice_agent_start(agent); }
static void voice_hear(void *agent, const int16_t *pcm) { voice_agent_hear(agent, pcm); }
static int voice_speak(void *agent, int16_t *pcm) { return voice_agent_speak(agent, pcm); }
static int voice_speak_again(void *agent, int16_t *pcm) { return voice_agent_speak_again(agent, pcm); }
static int voice_out_rate(void *agent) { return voice_agent_out_rate(agent); }

const struct agent_ops voice_agent_ops = {
    .name = "voice",
    .in_rate = VOICE_IN_RATE,
    .create = voice_create,
    .destroy = voice_destroy,
    .start = voice_start,
    .hear = voice_hear,
    .speak = voice_speak,
    .speak_again = voice_speak_again,
    .out_rate = voice_out_rate,
};
