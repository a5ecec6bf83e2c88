/*
 * voice: the voice agent, the turn manager of one call.
 *
 * It hears the caller one 20 ms frame at a time, decides when they start
 * and stop speaking, has their words recognised, asks the dialog engine
 * for a reply, has it spoken sentence by sentence, and lets the caller
 * interrupt. It runs on the call's media worker; the engines run
 * elsewhere and report back through the worker's mailbox.
 */
#ifndef TS_AGENT_VOICE_H
#define TS_AGENT_VOICE_H

#include <stdint.h>

#include "core/config.h"
#include "core/mailbox.h"
#include "engines/engines.h"
#include "media/agent.h" /* struct voice_settings, the page's choices; struct agent_host */

#define VOICE_FRAME 960     /* samples per 20 ms sent, at 48 kHz */
#define VOICE_IN_RATE 16000 /* what it hears: the call decodes the caller's Opus at this rate */
#define VOICE_IN_FRAME 320

struct voice_agent;

int voice_agent_new(struct voice_agent **out, const char *call_id, const struct config *cfg,
                    struct engines *engines, struct mailbox *home,
                    const struct voice_settings *settings, const struct agent_host *host);
void voice_agent_free(struct voice_agent *va);

/*
 * Puts the phrases every call may hear without an LLM reply (the greeting,
 * the apology, the idle prompt and farewell) in the TTS cache, in the
 * configured language and voice; the server calls it at start. A no-op
 * when the cache is off. Any thread.
 */
void voice_agent_warm(struct engines *e, const struct config *cfg);

/* Media flows: greet, start the idle clock. */
void voice_agent_start(struct voice_agent *va);

/* One received frame of 16 kHz PCM (VOICE_IN_FRAME samples); NULL when nothing arrived. */
void voice_agent_hear(struct voice_agent *va, const int16_t *pcm);

/* One frame to send: 1 with speech, 0 for silence (pcm is then zeros). */
int voice_agent_speak(struct voice_agent *va, int16_t *pcm);
/* After a kick: the frame the last voice_agent_speak gave was silence and
 * has not gone out. If a reply's audio is ready it takes that frame's place
 * (1, pcm filled; the echo canceller's reference is corrected); else 0 and
 * the silence stands. */
int voice_agent_speak_again(struct voice_agent *va, int16_t *pcm);
/* The rate the speech being sent was made at (0 when it cannot tell), for the encoder's band. */
int voice_agent_out_rate(const struct voice_agent *va);

#endif
