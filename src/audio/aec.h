/*
 * aec: removes the AI's own voice from the caller's microphone audio.
 *
 * The server knows exactly what it sent; that audio comes back through a
 * speakerphone after the network, the browser's buffers and the room have
 * delayed it (100-300 ms is common, sometimes more) and coloured it. This
 * module estimates that delay, cancels the echo (speexdsp's echo canceller
 * with the sent audio, aligned, as reference) and reports how loud the
 * residual echo is expected to be, so the VAD can discount it.
 *
 * 16 kHz mono, 20 ms frames. Feed every frame sent (silence too) with
 * aec_playback, and every frame received with aec_capture, in time order.
 */
#ifndef TS_AUDIO_AEC_H
#define TS_AUDIO_AEC_H

#include <stdint.h>

#define AEC_RATE 16000
#define AEC_FRAME 320

struct aec;

/* max_delay_ms: the longest echo path searched for (e.g. 500). */
int aec_new(struct aec **out, int max_delay_ms);
void aec_free(struct aec *a);

/* One frame the caller is about to hear (what we sent). */
void aec_playback(struct aec *a, const int16_t *far);
/* Takes back the last frame given to aec_playback: it was replaced before it went out. */
void aec_unplay(struct aec *a);

/* One frame from the caller's microphone; writes it with the echo removed. */
void aec_capture(struct aec *a, const int16_t *near, int16_t *out);

/* The expected level of the echo left in the last captured frame, dBFS (-120 = none). */
double aec_residual_db(const struct aec *a);
/* The current echo path delay estimate in ms, -1 when unknown. */
int aec_delay_ms(const struct aec *a);
/* 1 once the canceller has been aimed at an echo path: its speexdsp state,
 * most of this module's memory, exists only from then on. */
int aec_cancelling(const struct aec *a);

#endif
