/*
 * vad: voice activity detection and endpointing on 16 kHz mono PCM, in
 * 20 ms frames.
 *
 * Adaptive: the noise floor follows the background, so a fan or a street
 * does not count as speech. Speech onset is declared after `onset_ms` of
 * mostly voiced audio; the end of speech after `endpoint_ms` of silence; a
 * burst of speech shorter than `min_speech_ms` (a click, a cough) ends as
 * VAD_DISCARD instead of VAD_END.
 */
#ifndef TS_AUDIO_VAD_H
#define TS_AUDIO_VAD_H

#include <stdint.h>

#define VAD_RATE 16000
#define VAD_FRAME 320 /* 20 ms */

struct vad_config {
  int threshold_db;  /* above the noise floor */
  int onset_ms;
  int endpoint_ms;
  int min_speech_ms;
};

enum vad_event {
  VAD_NONE = 0,
  VAD_ONSET,   /* speech started: it began vad_onset_lag_ms() ago */
  VAD_END,     /* speech ended: the last voiced frame was endpoint_ms ago */
  VAD_DISCARD, /* the burst since the onset was too short to be speech */
};

struct vad;

int vad_new(struct vad **out, const struct vad_config *cfg);
void vad_free(struct vad *v);

/*
 * One 20 ms frame (VAD_FRAME samples). `echo_db` is the level, in dBFS, at
 * which the AI's own voice is expected in this frame after echo
 * cancellation (-120 when the AI is silent): the detector does not count
 * as speech what that echo can explain.
 */
enum vad_event vad_process(struct vad *v, const int16_t *frame, double echo_db);

int vad_in_speech(const struct vad *v);        /* between ONSET and END/DISCARD */
int vad_voiced_ms(const struct vad *v);        /* voiced time in the current burst */
int vad_onset_lag_ms(const struct vad *v);     /* how far back the onset's first voiced frame was */
double vad_level_db(const struct vad *v);      /* the last frame's level, dBFS */
double vad_noise_db(const struct vad *v);      /* the current noise floor, dBFS */
double vad_pitch_hz(const struct vad *v);      /* the last frame's pitch, 0 when it had none */
/* Changes the end-of-speech silence (e.g. shorter after a complete question). */
void vad_set_endpoint_ms(struct vad *v, int ms);

#endif
