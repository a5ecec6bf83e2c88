/*
 * Voice activity detection and endpointing for the caller's audio.
 *
 * The detector decides, every 20 ms, whether the caller is talking, and
 * turns those decisions into three events: ONSET (a turn started), END (it
 * finished: endpoint_ms of silence), DISCARD (what started was too short to
 * be speech). Two measurements per frame:
 *
 *   level: the energy of the 200-3500 Hz band (4th-order Butterworth high-
 *     and low-pass). Hum, rumble and hiss outside the voice band do not
 *     count; it is compared with an adaptive noise floor and with the
 *     residual echo level the echo canceller reports.
 *   voicing (speechlike.h): the band signal, low-passed at 2 kHz where a
 *     voice's harmonics dominate and taken to 8 kHz, gives a periodicity,
 *     0-1 (voiced speech mostly 0.5-0.95 even at 10 dB SNR, noise of any
 *     colour mostly below 0.3), a pitch, and how that pitch moved since the
 *     frames before: glided as a talker's does, held still as a tone's or
 *     a note's, or jumped.
 *
 * A frame is "active" when its level stands threshold_db above the noise
 * floor and ECHO_MARGIN_DB above the expected echo, and "voiced" when it is
 * periodic and either active or, softer, threshold_db / 2 above the floor
 * (speech at 5 dB SNR rarely clears the full threshold). The onset needs
 * onset_ms of voiced frames within a short window, two of them with a
 * gliding pitch, and no more held pitches than gliding ones in the last
 * 500 ms. So noise that is merely loud (a fan switched on, a door, a
 * cough) never starts a turn however far above the floor it is, and
 * neither do the periodic sounds that are not a voice: a dial tone, a
 * beep, DTMF and a piano hold their pitch; a thump's or a click's has no
 * stable pitch to glide. Once in speech,
 * any frame at least threshold_db / 2 above the floor keeps the turn
 * alive (unvoiced consonants, soft word endings), and endpoint_ms without
 * one ends it: the end of a turn is found exactly as before the voicing
 * tests, which only ever gate its start.
 *
 * The noise floor falls quickly to any quieter frame and rises slowly, and
 * only quickly while the audio is aperiodic and no turn is open: a steady
 * noise, of whatever level, becomes the floor within about a second, while
 * speech, which keeps dipping between syllables, does not drag it up. While
 * the echo is louder than the floor it is frozen, since the echo says
 * nothing about the room.
 */
#include "audio/vad.h"

#include "audio/speechlike.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_MS 20
#define DEC_FRAME (VAD_FRAME / 2) /* the band signal at 8 kHz */
_Static_assert(DEC_FRAME == SPEECHLIKE_FRAME, "one VAD frame is one voicing frame");
#define RING 128 /* frames of voicing history for the onset window */

#define PITCH_LP_HZ 2000     /* voicing is judged below this: harmonics dominate there */
#define PERIODIC 0.45        /* periodicity above which an active frame is voiced */
#define NOISELIKE 0.3        /* below this a frame may raise the floor quickly */
#define MIN_FLOOR_DB -75.0   /* the floor never goes below this (digital silence) */
#define SILENT_DB -120.0
#define FALL 0.3             /* per frame, towards a quieter frame */
#define RISE_NOISE 0.05      /* per frame, towards an aperiodic frame outside a turn */
#define RISE_SLOW 0.002      /* per frame, otherwise (steady periodic noise) */
#define ECHO_MARGIN_DB 6.0   /* speech stands this far above the expected echo */
#define GAP_FRAMES 3         /* inactive frames that end a candidate burst before onset */
#define GLIDES_NEEDED 2      /* voiced frames in the onset window whose pitch glided */
#define HELD_WINDOW 25       /* frames (500 ms) over which held and gliding pitches are weighed */
#define ECHO_TAIL 25         /* frames after the last expected echo before soft frames count */

struct biquad {
  double b0, b1, b2, a1, a2, z1, z2;
};

struct vad {
  struct vad_config cfg;
  struct biquad band[4], pitch_lp[2];
  struct speechlike *voicing;
  long frames;
  double level_db, noise_db, periodicity;
  int in_speech;
  /* the burst being watched or spoken */
  int run_frames;    /* frames since the burst's first active frame */
  int run_gap;       /* consecutive inactive frames */
  int burst_active;  /* active frames in the burst */
  int silence;       /* consecutive frames without activity, in speech */
  int since_echo;    /* frames since an echo was last expected */
  int onset_lag_ms;
  unsigned char voiced[RING]; /* per frame of the burst: VOICED, GLIDED, HELD bits */
};

#define VOICED 1 /* periodic, and loud enough */
#define GLIDED 2 /* voiced, its pitch glided from the frames before */
#define HELD 4   /* its pitch stayed put */

/* RBJ cookbook biquads; a 4th-order Butterworth is two of them with these Qs. */
static void biquad_design(struct biquad *f, int highpass, double hz, double q) {
  double w = 2 * M_PI * hz / VAD_RATE, c = cos(w), alpha = sin(w) / (2 * q);
  double a0 = 1 + alpha;
  double b1 = highpass ? -(1 + c) : 1 - c;
  double b0 = highpass ? (1 + c) / 2 : (1 - c) / 2;
  *f = (struct biquad){b0 / a0, b1 / a0, b0 / a0, -2 * c / a0, (1 - alpha) / a0, 0, 0};
}

static double biquad_run(struct biquad *f, double x) {
  double y = f->b0 * x + f->z1;
  f->z1 = f->b1 * x - f->a1 * y + f->z2;
  f->z2 = f->b2 * x - f->a2 * y;
  return y;
}

static const double BUTTER4_Q[2] = {0.54119610, 1.30656296};

int vad_new(struct vad **out, const struct vad_config *cfg) {
  if (!out) return -EINVAL;
  *out = NULL;
  if (!cfg || cfg->threshold_db < 1 || cfg->threshold_db > 60 || cfg->onset_ms < FRAME_MS ||
      cfg->onset_ms > (RING / 2) * FRAME_MS || cfg->endpoint_ms < FRAME_MS ||
      cfg->min_speech_ms < 0)
    return -EINVAL;
  struct vad *v = calloc(1, sizeof *v);
  if (!v) return -ENOMEM;
  int rc = speechlike_new(&v->voicing);
  if (rc < 0) {
    free(v);
    return rc;
  }
  v->cfg = *cfg;
  for (int i = 0; i < 2; i++) {
    biquad_design(&v->band[i], 1, 200, BUTTER4_Q[i]);
    biquad_design(&v->band[2 + i], 0, 3500, BUTTER4_Q[i]);
    biquad_design(&v->pitch_lp[i], 0, PITCH_LP_HZ, BUTTER4_Q[i]);
  }
  v->level_db = SILENT_DB;
  v->noise_db = MIN_FLOOR_DB;
  v->since_echo = ECHO_TAIL + 1;
  *out = v;
  return 0;
}

void vad_free(struct vad *v) {
  if (!v) return;
  speechlike_free(v->voicing);
  free(v);
}

static double to_db(double mean_square) {
  double db = 10 * log10(mean_square / (32768.0 * 32768.0) + 1e-30);
  return db < SILENT_DB ? SILENT_DB : db;
}

/* Band-pass the frame into the level; its low part, at 8 kHz, into dst. */
static double band_level(struct vad *v, const int16_t *frame, float *dst) {
  double sum = 0;
  for (int i = 0; i < VAD_FRAME; i++) {
    double y = frame[i];
    for (int s = 0; s < 4; s++) y = biquad_run(&v->band[s], y);
    sum += y * y;
    double p = biquad_run(&v->pitch_lp[1], biquad_run(&v->pitch_lp[0], y));
    if (i & 1) dst[i / 2] = (float)p;
  }
  return to_db(sum / VAD_FRAME);
}

static void track_noise(struct vad *v, double echo_db) {
  double d = v->level_db - v->noise_db;
  if (v->frames == 0)
    v->noise_db = v->level_db;
  else if (d < 0)
    v->noise_db += FALL * d;
  else if (echo_db > v->noise_db)
    ; /* the echo says nothing about the room */
  else if (!v->in_speech && v->periodicity < NOISELIKE)
    v->noise_db += RISE_NOISE * d;
  else
    v->noise_db += RISE_SLOW * d;
  if (v->noise_db < MIN_FLOOR_DB) v->noise_db = MIN_FLOOR_DB;
}

/* Frames among the last `window` with all of the `bits`. */
static int marked_in_window(const struct vad *v, int window, unsigned bits) {
  int n = 0;
  for (int i = 0; i < window; i++) n += (v->voiced[(v->frames - i + RING) % RING] & bits) == bits;
  return n;
}

static void forget_burst(struct vad *v) {
  v->run_frames = v->run_gap = v->burst_active = v->silence = 0;
  memset(v->voiced, 0, sizeof v->voiced);
}

/* active: the frame starts or extends a burst; mark: its bits for the window. */
static enum vad_event watch_for_onset(struct vad *v, int active, unsigned mark) {
  if (!active && v->run_frames == 0) return VAD_NONE;
  v->run_frames++;
  if (active) {
    v->run_gap = 0;
    v->burst_active++;
  } else if (++v->run_gap >= GAP_FRAMES) {
    forget_burst(v);
    return VAD_NONE;
  }
  v->voiced[v->frames % RING] = (unsigned char)mark;
  int need = v->cfg.onset_ms / FRAME_MS;
  if (need < 1) need = 1;
  int window = need + need / 2;
  /* "mostly voiced": one unvoiced frame in three is tolerated */
  if (marked_in_window(v, window, VOICED) < need) return VAD_NONE;
  /* and a voice's pitch, which moves: not a tone, a held note, a thump */
  int glides = need < GLIDES_NEEDED ? need : GLIDES_NEEDED;
  if (marked_in_window(v, window, VOICED | GLIDED) < glides) return VAD_NONE;
  /* a pitch held (a tone, a note) more often than it glided is not a voice */
  int held = marked_in_window(v, HELD_WINDOW, HELD);
  if (held >= 2 && held > marked_in_window(v, HELD_WINDOW, VOICED | GLIDED)) return VAD_NONE;
  v->in_speech = 1;
  v->silence = 0;
  v->onset_lag_ms = v->run_frames * FRAME_MS;
  return VAD_ONSET;
}

static enum vad_event follow_speech(struct vad *v, int holding) {
  if (holding) {
    v->silence = 0;
    v->burst_active++;
    return VAD_NONE;
  }
  if (++v->silence * FRAME_MS < v->cfg.endpoint_ms) return VAD_NONE;
  int spoken = v->burst_active * FRAME_MS;
  v->in_speech = 0;
  forget_burst(v);
  return spoken >= v->cfg.min_speech_ms ? VAD_END : VAD_DISCARD;
}

/*
 * What the onset window keeps of the frame (VOICED, GLIDED, HELD bits); *loud
 * says whether it starts or extends a candidate burst. over_noise and
 * over_echo: how far the level clears the floor plus threshold_db and the
 * echo plus ECHO_MARGIN_DB.
 */
static unsigned mark_frame(struct vad *v, double over_noise, double over_echo, int *loud) {
  int active = over_noise >= 0 && over_echo >= 0;
  /* A periodic frame may be softer, half the threshold over the floor: the
   * pitch tests keep noise out. Not while the AI's echo may still arrive:
   * its estimate ends when the AI stops, the echo a path's delay later. */
  int soft = over_noise >= -v->cfg.threshold_db / 2.0 && over_echo >= 0 &&
             v->since_echo > ECHO_TAIL;
  int voiced = (active || soft) && v->periodicity >= PERIODIC;
  enum speechlike_motion m = speechlike_motion(v->voicing);
  unsigned mark = voiced ? VOICED | (m == SPEECHLIKE_GLIDE ? GLIDED : 0) : 0;
  if (m == SPEECHLIKE_HELD && (active || voiced)) mark |= HELD;
  *loud = active || voiced;
  return mark;
}

enum vad_event vad_process(struct vad *v, const int16_t *frame, double echo_db) {
  if (!v || !frame) return VAD_NONE;
  if (!(echo_db > SILENT_DB)) echo_db = SILENT_DB; /* also catches NaN */
  if (echo_db > SILENT_DB)
    v->since_echo = 0;
  else if (v->since_echo <= ECHO_TAIL)
    v->since_echo++;
  float low[DEC_FRAME];
  v->level_db = band_level(v, frame, low);
  v->periodicity = speechlike_analyse(v->voicing, low);
  double over_noise = v->level_db - v->noise_db - v->cfg.threshold_db;
  double over_echo = v->level_db - echo_db - ECHO_MARGIN_DB;
  enum vad_event ev;
  if (v->in_speech) {
    int holding = v->level_db - v->noise_db >= v->cfg.threshold_db / 2.0 &&
                  over_echo >= -ECHO_MARGIN_DB / 2.0;
    ev = follow_speech(v, holding);
  } else {
    int loud;
    unsigned mark = mark_frame(v, over_noise, over_echo, &loud);
    ev = watch_for_onset(v, loud, mark);
  }
  track_noise(v, echo_db);
  v->frames++;
  return ev;
}

int vad_in_speech(const struct vad *v) { return v ? v->in_speech : 0; }

int vad_voiced_ms(const struct vad *v) { return v ? v->burst_active * FRAME_MS : 0; }

int vad_onset_lag_ms(const struct vad *v) { return v ? v->onset_lag_ms : 0; }

double vad_level_db(const struct vad *v) { return v ? v->level_db : SILENT_DB; }
double vad_pitch_hz(const struct vad *v) { return v ? speechlike_pitch_hz(v->voicing) : 0; }

double vad_noise_db(const struct vad *v) { return v ? v->noise_db : SILENT_DB; }

void vad_set_endpoint_ms(struct vad *v, int ms) {
  if (v && ms >= FRAME_MS) v->cfg.endpoint_ms = ms;
}
