/*
 * agent: what a call's media needs from whatever answers the call.
 *
 * The media layer drives an agent and knows nothing else about it: once a
 * tick it hands over one frame of the caller (or nothing) and takes one
 * frame to send. Each agent fills one table of these operations
 * (src/agent/agents.h finds a table by the name configured as `agent`), so
 * adding an agent touches no media code, and a frame costs the call one
 * indirect call to hear and one to speak.
 *
 * All of it runs on the call's media worker, like the call itself.
 */
#ifndef TS_MEDIA_AGENT_H
#define TS_MEDIA_AGENT_H

#include <stdint.h>

struct config;
struct engines;
struct mailbox;

/*
 * The page's per-call choices; empty strings and 0 take the server's
 * configuration. The name is the voice agent's, the one agent that reads
 * them; signaling fills them and the call carries them to the agent.
 */
struct voice_settings {
  char language[16];
  char voice[128];
  char system_prompt[4096];
  char greeting[1024];
  int has_greeting; /* greeting was given (even empty) */
  int rate;
};

/* How an agent reaches back to its call. */
struct agent_host {
  /* A JSON event for the page (ownership of `json`, from malloc, passes). */
  void (*event)(void *user, char *json);
  /* The agent ends the call ("goodbye", "idle"). */
  void (*end)(void *user, const char *reason);
  /* A frame became ready between ticks: the host may ask for it now, through speak_again. */
  void (*kick)(void *user);
  void *user;
};

/* What an agent is made from. Nothing here need outlive the create call. */
struct agent_params {
  const char *call_id;
  const struct config *cfg;
  struct engines *engines;   /* NULL for an agent that needs none */
  struct mailbox *home;      /* the worker's mailbox, where engine results arrive */
  const struct voice_settings *settings;
  const struct agent_host *host;
};

struct agent_ops {
  const char *name; /* as in the `agent` setting */
  int in_rate;      /* the rate heard, in Hz: a frame heard is in_rate / 50 samples */
  /* A new agent in *out; 0 or a negative errno. */
  int (*create)(void **out, const struct agent_params *p);
  /* Frees the agent; it may still send events through its host while it does. NULL is a no-op. */
  void (*destroy)(void *agent);
  /* Media flows (DTLS is up). NULL when there is nothing to do then. */
  void (*start)(void *agent);
  /* One frame of the caller, in_rate / 50 samples; NULL when nothing arrived. */
  void (*hear)(void *agent, const int16_t *pcm);
  /* The next frame to send, 960 samples at 48 kHz: 1 with speech, 0 for silence (pcm zeros). */
  int (*speak)(void *agent, int16_t *pcm);
  /* After a kick: the last frame speak gave was silence and has not gone
   * out. 1 when speech now takes its place (pcm filled), else 0. NULL for
   * an agent that never kicks. */
  int (*speak_again)(void *agent, int16_t *pcm);
  /* The rate the speech it is sending was made at, in Hz (a 16 kHz reply:
   * 16000): nothing in it lies above half that, so the call's encoder
   * codes no higher band (wideband for 16 kHz, some 12 % less encoding a
   * frame). Asked with each frame of speech; 0, or a NULL op, for the full
   * band, which an agent must answer when it cannot tell. */
  int (*out_rate)(void *agent);
};

#endif
