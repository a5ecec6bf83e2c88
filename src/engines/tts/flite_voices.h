/*
 * flite_voices: flite's English voices, shared by every user of libflite in
 * the process (the flite backend, the tone load-test backend, tests).
 *
 * flite keeps registered voices in process globals and registering is not
 * thread-safe, so registration is counted and serialised here: the first
 * acquire registers slt, kal, awb and rms, the last release unregisters
 * them. Between the two, voices may be used from any number of threads at
 * once, provided per-synthesis settings go on the utterance (see flite.c).
 */
#ifndef TS_ENGINES_TTS_FLITE_VOICES_H
#define TS_ENGINES_TTS_FLITE_VOICES_H

#include <stddef.h>
#include <stdint.h>

#include <flite/flite.h>

/* 0, or -ENOMEM when flite could not build its voices. */
int tts_flite_voices_acquire(void);
void tts_flite_voices_release(void);

/* "slt", "kal", "awb", "rms" (or "cmu_us_slt"...); NULL or "" = slt.
 * NULL for an unknown name. Only between acquire and release. */
cst_voice *tts_flite_voice(const char *name);

/* Synthesises `text` whole. On success *pcm (malloc'd), *n and *rate. */
int tts_flite_render(cst_voice *voice, const char *text, int16_t **pcm, size_t *n, int *rate);

#endif
