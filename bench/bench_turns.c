/*
 * bench_turns: the latency of the voice agent's turns, with the embedded
 * engines, in real time.
 *
 * One call's voice agent runs on a libuv loop exactly as on a media worker:
 * a 20 ms timer hears a frame and makes the next one, engine results arrive through
 * the loop's mailbox between ticks, and a reply's first frame goes out at
 * once. The caller is simulated: questions spoken by a flite voice other
 * than the agent's, each followed by silence until the reply has been
 * played. The agent's `latency` events are collected and summarised:
 * p50/p95/max of every figure of DESIGN.md's "Latency, defined once", and
 * the pipeline overhead (voice_to_voice minus the engines' own time).
 *
 *   bench_turns [--turns N] [--json FILE] [--asr NAME --llm NAME --tts NAME]
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/voice.h"
#include "audio/resample.h"
#include "core/log.h"
#include "core/pool.h"
#include "engines/engines.h"
#include "engines/tts/flite_voices.h"


#define F VOICE_FRAME
#define MAX_TURNS 200

static const char *const questions[] = {
    "What time is it?",        "What is the date today?", "What is two plus three?",
    "Hello there.",            "What is nine times seven?", "What can you do?",
    "What day is it today?",   "What is ten minus four?",   "Thank you.",
    "What is twelve plus eight?",
};
#define NQ (sizeof questions / sizeof questions[0])

static const char *const figures[] = {"endpoint_ms",        "asr_ms",
                                      "llm_first_token_ms", "llm_first_sentence_ms",
                                      "tts_first_audio_ms", "voice_to_voice_ms",
                                      "overhead_ms"};
#define NFIG (sizeof figures / sizeof figures[0])

struct bench {
  uv_loop_t loop;
  uv_timer_t tick;
  struct mailbox *home;
  struct voice_agent *va;
  int16_t *speech;  /* the question being asked, 16 kHz as the call decodes it */
  int speech_frames, pos, silence;
  int turn, turns, replies;
  double values[NFIG][MAX_TURNS];
  int counts[NFIG];
};

static void on_home(struct mailbox *mb, struct mailbox_msg *m, void *u) { free(m); }

static void on_event(void *user, char *json) {
  struct bench *b = user;
  json_t *ev = json_loads(json, 0, NULL);
  free(json);
  const char *type = json_string_value(json_object_get(ev, "type"));
  if (type && !strcmp(type, "latency") && json_integer_value(json_object_get(ev, "turn")) > 0) {
    for (size_t i = 0; i < NFIG; i++) {
      json_t *v = json_object_get(ev, figures[i]);
      if (json_is_number(v) && b->counts[i] < MAX_TURNS) b->values[i][b->counts[i]++] = json_number_value(v);
    }
  } else if (type && !strcmp(type, "reply")) {
    b->replies++;
  } else if (type && !strcmp(type, "transcript") && json_is_true(json_object_get(ev, "final"))) {
    fprintf(stderr, "  heard: %s\n", json_string_value(json_object_get(ev, "text")));
  }
  json_decref(ev);
}

static void on_end(void *user, const char *reason) {}

static void on_kick(void *user) {
  struct bench *b = user;
  int16_t out[F];
  voice_agent_speak_again(b->va, out);
}

static int16_t *say(const char *text, int *frames) {
  int16_t *raw;
  size_t n_raw;
  int rate;
  int16_t *pcm;
  size_t n;
  if (tts_flite_render(tts_flite_voice("awb"), text, &raw, &n_raw, &rate) ||
      resampler_convert(raw, n_raw, rate, VOICE_IN_RATE, 3, &pcm, &n))
    exit(1);
  free(raw);
  *frames = (int)(n / VOICE_IN_FRAME) + 1; /* the last one rounded up: zeros follow */
  return pcm;
}

static void next_question(struct bench *b) {
  free(b->speech);
  b->speech = NULL;
  if (b->turn >= b->turns) {
    uv_timer_stop(&b->tick);
    uv_stop(&b->loop);
    return;
  }
  const char *q = questions[b->turn % NQ];
  fprintf(stderr, "turn %d: %s\n", b->turn + 1, q);
  b->speech = say(q, &b->speech_frames);
  b->pos = 0;
  b->turn++;
}

static void on_tick(uv_timer_t *t) {
  struct bench *b = t->data;
  int16_t out[F];
  const int16_t *in = NULL;
  if (b->speech && b->pos < b->speech_frames) in = b->speech + (size_t)b->pos++ * VOICE_IN_FRAME;
  voice_agent_hear(b->va, in);
  voice_agent_speak(b->va, out); /* the next tick's frame, made ahead as on a media worker */
  /* The next question comes 1.5 s after the reply to the last one (15 s at most). */
  if (b->speech && b->pos < b->speech_frames) return;
  b->silence++;
  int answered = b->replies >= b->turn;
  if ((answered && b->silence >= 75) || b->silence >= 750) {
    b->silence = 0;
    next_question(b);
  }
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p) {
  if (n == 0) return NAN;
  int i = (int)ceil(p / 100.0 * n) - 1;
  return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static void report(struct bench *b, const char *json_path, const struct config *cfg) {
  json_t *root = json_pack("{s:s,s:s,s:s,s:i}", "asr", cfg->asr, "llm", cfg->llm, "tts", cfg->tts,
                           "turns", b->turn);
  printf("\n%-24s %6s %9s %9s %9s\n", "figure (ms)", "n", "p50", "p95", "max");
  for (size_t i = 0; i < NFIG; i++) {
    int n = b->counts[i];
    qsort(b->values[i], (size_t)n, sizeof(double), cmp);
    double p50 = pct(b->values[i], n, 50), p95 = pct(b->values[i], n, 95),
           mx = n ? b->values[i][n - 1] : NAN;
    printf("%-24s %6d %9.1f %9.1f %9.1f\n", figures[i], n, p50, p95, mx);
    json_object_set_new(root, figures[i],
                        json_pack("{s:i,s:f,s:f,s:f}", "n", n, "p50", n ? p50 : 0, "p95",
                                  n ? p95 : 0, "max", n ? mx : 0));
  }
  if (json_path && json_dump_file(root, json_path, JSON_INDENT(2)) != 0)
    fprintf(stderr, "cannot write %s\n", json_path);
  json_decref(root);
}

int main(int argc, char **argv) {
  struct config cfg;
  config_defaults(&cfg);
  cfg.idle_prompt_ms = cfg.idle_hangup_ms = 0;
  const char *json_path = NULL;
  int turns = 20;
  char err[512];
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--turns")) turns = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--json")) json_path = argv[i + 1];
    else if (config_set(&cfg, argv[i] + 2, argv[i + 1], "flag", err, sizeof err)) {
      fprintf(stderr, "%s\n", err);
      return 2;
    }
  }
  if (turns < 1 || turns > MAX_TURNS) turns = 20;
  log_configure(LOG_WARN, 0);
  if (tts_flite_voices_acquire()) return 1;
  static struct bench b;
  b.turns = turns;
  struct pool *pool;
  struct engines *eng;
  uv_loop_init(&b.loop);
  if (mailbox_new(&b.home, &b.loop, on_home, &b) || pool_new(&pool, 2)) return 1;
  struct engine_env env = {&cfg, pool, b.home, NULL};
  if (engines_open(&eng, &env, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  struct voice_host host = {on_event, on_end, on_kick, &b};
  if (voice_agent_new(&b.va, "bench", &cfg, eng, b.home, NULL, &host)) return 1;
  voice_agent_start(b.va);
  uv_timer_init(&b.loop, &b.tick);
  b.tick.data = &b;
  uv_timer_start(&b.tick, on_tick, 20, 20);
  uv_run(&b.loop, UV_RUN_DEFAULT);
  report(&b, json_path, &cfg);

  voice_agent_free(b.va);
  pool_stop(pool);
  engines_close(eng);
  pool_free(pool);
  uv_close((uv_handle_t *)&b.tick, NULL);
  mailbox_close(b.home, NULL);
  uv_run(&b.loop, UV_RUN_DEFAULT);
  uv_loop_close(&b.loop);
  free(b.speech);
  tts_flite_voices_release();
  return 0;
}
