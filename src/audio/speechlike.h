/*
 * speechlike: is a sound voiced, and is its voicing a voice's?
 *
 * Fed the caller's voice band at 8 kHz, 20 ms at a time (SPEECHLIKE_FRAME
 * samples), it measures how periodic the sound is, at which pitch, and
 * whether that pitch moved since the frames before the way a talker's
 * does: a little, gliding. A tone, a beep, a DTMF digit or a held musical
 * note keeps its pitch to a fraction of a per cent; a new note jumps by a
 * semitone or more; a thump or a click has no stable pitch at all. Speech
 * glides by 0.5-5 % per 20 ms. The VAD uses this to start turns on voices
 * only; it costs about 1 µs per frame on top of the periodicity.
 */
#ifndef TS_AUDIO_SPEECHLIKE_H
#define TS_AUDIO_SPEECHLIKE_H

#define SPEECHLIKE_RATE 8000
#define SPEECHLIKE_FRAME 160 /* 20 ms */

enum speechlike_motion {
  SPEECHLIKE_UNKNOWN = 0, /* too little periodicity here or just before to tell */
  SPEECHLIKE_GLIDE,       /* the pitch moved as a voice's does */
  SPEECHLIKE_HELD,        /* the pitch stayed put: a tone, a held note */
  SPEECHLIKE_JUMP,        /* the pitch jumped: a new note, or no real pitch */
};

struct speechlike;

int speechlike_new(struct speechlike **out);
void speechlike_free(struct speechlike *s);

/*
 * Appends one frame of the band signal (SPEECHLIKE_FRAME samples at 8 kHz,
 * low-passed near 2 kHz) and returns its periodicity, 0-1: the normalised
 * self-similarity one pitch period (80-500 Hz) back of the signal whitened
 * against its own colour.
 */
double speechlike_analyse(struct speechlike *s, const float *frame);

/* The last analysed frame's pitch in Hz (0 when it had none). */
double speechlike_pitch_hz(const struct speechlike *s);

/*
 * How the last analysed frame's pitch moved since the frames before, when
 * they were periodic enough to follow.
 */
enum speechlike_motion speechlike_motion(const struct speechlike *s);

#endif
