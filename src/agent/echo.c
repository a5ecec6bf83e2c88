/*
 * The echo agent.
 *
 * Speech is told from silence by frame energy against an adaptive noise
 * floor: the floor follows quiet frames quickly and loud ones slowly, and a
 * frame is voiced when it stands 12 dB above the floor and above an absolute
 * minimum. An utterance starts at the first voiced frame (keeping 100 ms of
 * audio before it, so the onset of the first word is not cut) and ends after
 * 600 ms without a voiced one. Then it is played back whole, and the agent
 * stops listening while it plays, as a walkie-talkie would.
 *
 * An utterance is capped at 15 s; longer speech is played back in pieces.
 */
#include "agent/echo.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agents.h"

#define PREROLL_FRAMES 5    /* 100 ms kept before speech onset */
#define HANGOVER_FRAMES 30  /* 600 ms of silence ends an utterance */
#define MAX_FRAMES 750      /* 15 s */
#define MIN_VOICED 4        /* fewer voiced frames than this is a click, not speech */
#define MIN_DB -50.0        /* absolute floor for speech, dBFS */
#define ABOVE_FLOOR_DB 12.0

enum echo_state { LISTENING, RECORDING, PLAYING };

struct echo_agent {
  enum echo_state state;
  double floor_db;
  int16_t *buf;             /* MAX_FRAMES frames */
  int frames;               /* recorded */
  int played;               /* played back so far */
  int silent_run, voiced;
  int16_t preroll[PREROLL_FRAMES][ECHO_FRAME];
  int preroll_n, preroll_head;
};

struct echo_agent *echo_agent_new(void) {
  struct echo_agent *ea = calloc(1, sizeof *ea);
  if (!ea) return NULL;
  ea->buf = malloc(sizeof(int16_t) * ECHO_FRAME * MAX_FRAMES);
  if (!ea->buf) {
    free(ea);
    return NULL;
  }
  ea->floor_db = -60.0;
  return ea;
}

void echo_agent_free(struct echo_agent *ea) {
  if (!ea) return;
  free(ea->buf);
  free(ea);
}

static double frame_db(const int16_t *pcm) {
  double sum = 0;
  for (int i = 0; i < ECHO_FRAME; i++) sum += (double)pcm[i] * pcm[i];
  return 10.0 * log10(sum / ECHO_FRAME / (32768.0 * 32768.0) + 1e-12);
}

static int is_voiced(struct echo_agent *ea, double db) {
  int voiced = db > MIN_DB && db > ea->floor_db + ABOVE_FLOOR_DB;
  /* Fall fast to quiet, rise slowly, so speech does not drag the floor up. */
  double rate = db < ea->floor_db ? 0.3 : (voiced ? 0.002 : 0.05);
  ea->floor_db += rate * (db - ea->floor_db);
  return voiced;
}

static void append(struct echo_agent *ea, const int16_t *pcm) {
  if (ea->frames < MAX_FRAMES) memcpy(ea->buf + (size_t)ea->frames++ * ECHO_FRAME, pcm, sizeof(int16_t) * ECHO_FRAME);
}

static void remember(struct echo_agent *ea, const int16_t *pcm) {
  memcpy(ea->preroll[ea->preroll_head], pcm, sizeof ea->preroll[0]);
  ea->preroll_head = (ea->preroll_head + 1) % PREROLL_FRAMES;
  if (ea->preroll_n < PREROLL_FRAMES) ea->preroll_n++;
}

static void start_recording(struct echo_agent *ea) {
  ea->state = RECORDING;
  ea->frames = ea->silent_run = ea->voiced = 0;
  int first = (ea->preroll_head - ea->preroll_n + PREROLL_FRAMES) % PREROLL_FRAMES;
  for (int i = 0; i < ea->preroll_n; i++) append(ea, ea->preroll[(first + i) % PREROLL_FRAMES]);
  ea->preroll_n = 0;
}

static void finish_recording(struct echo_agent *ea) {
  if (ea->voiced < MIN_VOICED) {
    ea->state = LISTENING;
    return;
  }
  /* Trim the trailing silence, keeping 200 ms of it. */
  int trim = ea->silent_run > 10 ? ea->silent_run - 10 : 0;
  ea->frames -= trim < ea->frames ? trim : 0;
  ea->played = 0;
  ea->state = PLAYING;
}

void echo_agent_hear(struct echo_agent *ea, const int16_t *pcm) {
  static const int16_t zeros[ECHO_FRAME];
  if (ea->state == PLAYING) return;
  if (!pcm) pcm = zeros;
  int voiced = is_voiced(ea, frame_db(pcm));
  if (ea->state == LISTENING) {
    if (!voiced) {
      remember(ea, pcm);
      return;
    }
    start_recording(ea);
  }
  append(ea, pcm);
  ea->voiced += voiced;
  ea->silent_run = voiced ? 0 : ea->silent_run + 1;
  if (ea->silent_run >= HANGOVER_FRAMES || ea->frames >= MAX_FRAMES) finish_recording(ea);
}

int echo_agent_speak(struct echo_agent *ea, int16_t *pcm) {
  if (ea->state != PLAYING) {
    memset(pcm, 0, sizeof(int16_t) * ECHO_FRAME);
    return 0;
  }
  memcpy(pcm, ea->buf + (size_t)ea->played++ * ECHO_FRAME, sizeof(int16_t) * ECHO_FRAME);
  if (ea->played >= ea->frames) {
    ea->state = LISTENING;
    ea->frames = 0;
  }
  return 1;
}

int echo_agent_speaking(const struct echo_agent *ea) { return ea->state == PLAYING; }

/* --- as the media layer sees it (media/agent.h) ------------------------------ */

static int echo_create(void **out, const struct agent_params *p) {
  (void)p; /* it needs no engines, settings or host */
  *out = echo_agent_new();
  return *out ? 0 : -ENOMEM;
}

static void echo_destroy(void *agent) { echo_agent_free(agent); }
static void echo_hear(void *agent, const int16_t *pcm) { echo_agent_hear(agent, pcm); }
static int echo_speak(void *agent, int16_t *pcm) { return echo_agent_speak(agent, pcm); }

/* It hears the full band it plays back, and never speaks between ticks. */
const struct agent_ops echo_agent_ops = {
    .name = "echo",
    .in_rate = ECHO_RATE,
    .create = echo_create,
    .destroy = echo_destroy,
    .hear = echo_hear,
    .speak = echo_speak,
};
