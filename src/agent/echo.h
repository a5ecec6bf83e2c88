/*
 * echo: the echo agent. It listens, and when the caller pauses it plays back
 * what they said. It makes the media path testable on its own: what the
 * browser hears must be what it sent.
 *
 * Runs on the call's media worker, 20 ms frames of 48 kHz mono PCM.
 */
#ifndef TS_AGENT_ECHO_H
#define TS_AGENT_ECHO_H

#include <stdint.h>

#define ECHO_RATE 48000 /* it hears and speaks at the same rate */
#define ECHO_FRAME 960  /* samples per 20 ms at 48 kHz */

struct echo_agent;

struct echo_agent *echo_agent_new(void);
void echo_agent_free(struct echo_agent *ea);

/* One received frame; NULL when nothing arrived (counts as silence). */
void echo_agent_hear(struct echo_agent *ea, const int16_t *pcm);

/* Fills one frame to send; returns 1 with audio, 0 when there is nothing to say (pcm zeros). */
int echo_agent_speak(struct echo_agent *ea, int16_t *pcm);

/* 1 while playing back. */
int echo_agent_speaking(const struct echo_agent *ea);

#endif
