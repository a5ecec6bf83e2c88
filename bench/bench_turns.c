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
 * With --suite turntaking it asks instead how well the agent takes turns,
 * from recorded clips (see the suite's part below): how fast it answers a
 * complete sentence, how often it cuts off a caller who pauses mid-sentence,
 * and how often sounds that are not speech make it take a turn or stop
 * talking.
 *
 *   bench_turns [--turns N] [--json FILE] [--asr NAME --llm NAME --tts NAME]
 *   bench_turns --suite turntaking [--clips DIR] [--nonspeech DIR] [--json FILE]
 *               [--trace 1] [--set KEY=VALUE]...
 */
#include <dirent.h>
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
#define V2V 5 /* figures[V2V] is voice_to_voice_ms */

struct bench {
  uv_loop_t *loop;
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
    uv_stop(b->loop);
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

/* --- the call's surroundings: a loop, its mailbox, the pool and the engines ----------- */

struct rig {
  uv_loop_t loop;
  struct mailbox *home;
  struct pool *pool;
  struct engines *eng;
};

static int rig_open(struct rig *r, const struct config *cfg, mailbox_cb cb, void *user) {
  char err[512];
  uv_loop_init(&r->loop);
  if (mailbox_new(&r->home, &r->loop, cb, user) || pool_new(&r->pool, 2)) return -1;
  struct engine_env env = {cfg, r->pool, r->home, NULL};
  if (engines_open(&r->eng, &env, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  return 0;
}

/* After the agents are freed and the timers closed. */
static void rig_close(struct rig *r) {
  pool_stop(r->pool);
  engines_close(r->eng);
  pool_free(r->pool);
  mailbox_close(r->home, NULL);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  uv_loop_close(&r->loop);
}

static int run_questions(const struct config *cfg, int turns, const char *json_path) {
  static struct bench b;
  static struct rig r;
  b.turns = turns;
  b.loop = &r.loop;
  if (rig_open(&r, cfg, on_home, &b)) return 1;
  struct agent_host host = {on_event, on_end, on_kick, &b};
  if (voice_agent_new(&b.va, "bench", cfg, r.eng, r.home, NULL, &host)) return 1;
  voice_agent_start(b.va);
  uv_timer_init(&r.loop, &b.tick);
  b.tick.data = &b;
  uv_timer_start(&b.tick, on_tick, 20, 20);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  report(&b, json_path, cfg);

  voice_agent_free(b.va);
  uv_close((uv_handle_t *)&b.tick, NULL);
  rig_close(&r);
  free(b.speech);
  return 0;
}

/* --- the turn-taking suite ---------------------------------------------------------------
 *
 * Every trial is a call of its own: a fresh agent (no greeting, or a long
 * one to talk over), one clip from the caller, and the agent's events and
 * frames watched as they happen, each stamped with the tick it came in.
 * A trial never depends on what the one before it left behind, so a cut-off
 * or a false turn costs nothing but its own count.
 *
 * Four kinds of trial:
 *  - complete: a whole question, then silence. voice_to_voice of its turn.
 *  - incomplete: words, a pause (300, 600, 1000 ms), the rest (turns.tsv
 *    says where each pause is). A cut-off is the agent ending the turn in
 *    the pause. Speech while it is still thinking joins the turn, so ending
 *    early is not by itself a fault; the faults are reply audio before the
 *    caller has finished, and a split turn: two turns where there was one,
 *    or the turn's last final transcript arriving before the rest was said.
 *  - listen: a non-speech clip (at most CHUNK_FRAMES of it) while the agent
 *    listens. Onsets (state user_speaking), turns (final transcripts with a
 *    turn), replies (latency of a turn) are false ones.
 *  - over: the same while the agent speaks a long greeting, from 300 ms
 *    into it. A pause is a frame of silence in the middle of the greeting
 *    (voice_agent_speak returned 0 after giving audio, with no `reply`
 *    event yet); an interruption is a `reply` event with interrupted true.
 *    A control trial with silence instead of a clip counts the pauses the
 *    playout makes by itself (between sentences), which should be none.
 *
 * Clips named speech_* hold speech in noise: there a turn and a barge-in are
 * what should happen, and they are reported as detections, one utterance
 * (as NAME.txt beside the clip lists them) per trial.
 */

#define CHUNK_FRAMES 500  /* 10 s: the most of a clip one trial plays */
#define LEAD_FRAMES 25    /* silence before the caller's clip */
#define OVER_DELAY 15     /* the clip starts 300 ms into the greeting */
#define MAX_GAPS 4
#define MAX_SEGS 32
#define MAX_CLIPS 128

static const char long_greeting[] =
    "Hello! I'm a simple offline assistant. I can tell you the time and the date, do sums, "
    "and repeat after you. You can ask me the time or today's date. I can do sums, like "
    "twelve times seven. Say repeat after me, then some words, and I'll say them back. "
    "Say goodbye to hang up.";

enum tkind { TK_COMPLETE, TK_INCOMPLETE, TK_LISTEN, TK_OVER };

struct clip {
  char name[64];
  int16_t *pcm; /* frames * VOICE_IN_FRAME samples, the last frame padded with zeros */
  int frames;
};

struct turn_clip {
  struct clip c;
  int incomplete, pause_ms, ngaps;
  int gap[MAX_GAPS][2]; /* frames from the clip's start: [start, end) of each pause */
  char voice[16], text[256];
};

struct ns_class {
  struct clip c;
  int speech, expect;                 /* speech_*: utterances, each a turn to be detected */
  int nseg, seg[MAX_SEGS][2];         /* the parts played, [start, end) in frames */
  int listen_frames, onsets, turns, replies;
  int over_frames, pauses, interrupts, over_plays, barged;
  int listen_plays, detected;
};

/* What one trial saw. Frame stamps count ticks from the trial's start. */
struct watch {
  int f, first_audio, last_audio_out, reply_f, interrupted;
  int onsets, finals, final_f, early_final, min_turn, max_turn, nlatency, latency_f, pauses;
  double fig[NFIG]; /* the last caller turn's latency event, NAN where absent */
  char state[16], final_text[512];
};

struct suite {
  uv_loop_t *loop;
  uv_timer_t tick;
  const struct config *cfg;
  struct engines *eng;
  struct mailbox *home;
  struct voice_agent *va;
  int trace; /* every event to stderr, stamped from the clip's start */

  /* the trial running */
  enum tkind kind;
  const struct clip *clip;
  int from, len;      /* the part of the clip this trial plays */
  int play_at;        /* the tick of its first frame: LEAD_FRAMES, or 300 ms into the greeting */
  int gap_hi;         /* incomplete: the tick the last pause ends */
  struct watch w;

  /* the plan: trials in order, and where their results go */
  struct turn_clip turns[MAX_CLIPS];
  int nturns;
  struct ns_class ns[MAX_CLIPS];
  int nns;
  int step, sub, substeps; /* trial step; a class's chunk, and how many it has */

  /* results */
  struct pause_stats {
    int ms, n, early, audio, split, missed, heard;
  } by_pause[8];
  int npause;
  double complete[NFIG][MAX_CLIPS], v2v_incomplete[MAX_CLIPS];
  int n_complete[NFIG], n_incomplete, complete_split;
  json_t *trials;
  struct ns_class control;
};

/* -- clips -- */

static uint32_t le32(const unsigned char *p) {
  return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  unsigned char *buf = NULL;
  long len = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
  if (len > 0 && fseek(fp, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len)) &&
      fread(buf, 1, (size_t)len, fp) != (size_t)len) {
    free(buf);
    buf = NULL;
  }
  fclose(fp);
  *n = (size_t)(len > 0 ? len : 0);
  return buf;
}

/* 16-bit PCM WAV, any rate and channel count: mixed to mono, at 16 kHz, in whole frames. */
static int load_wav(struct clip *c, const char *path) {
  size_t n, at = 12;
  unsigned char *buf = slurp(path, &n);
  int channels = 0, rate = 0, bits = 0, rc = -1;
  if (!buf || n < 12 || memcmp(buf, "RIFF", 4) || memcmp(buf + 8, "WAVE", 4)) goto out;
  while (at + 8 <= n) {
    size_t size = le32(buf + at + 4), body = at + 8;
    if (size > n - body) size = n - body;
    if (!memcmp(buf + at, "fmt ", 4) && size >= 16) {
      channels = le16(buf + body + 2);
      rate = (int)le32(buf + body + 4);
      bits = le16(buf + body + 14);
    } else if (!memcmp(buf + at, "data", 4) && channels > 0 && bits == 16 && rate > 0) {
      size_t samples = size / 2 / (size_t)channels;
      int16_t *mono = malloc((samples ? samples : 1) * sizeof *mono);
      if (!mono) goto out;
      for (size_t i = 0; i < samples; i++) {
        long sum = 0;
        for (int ch = 0; ch < channels; ch++)
          sum += (int16_t)le16(buf + body + (i * (size_t)channels + (size_t)ch) * 2);
        mono[i] = (int16_t)(sum / channels);
      }
      int16_t *pcm = mono;
      size_t m = samples;
      if (rate != VOICE_IN_RATE) {
        int bad = resampler_convert(mono, samples, rate, VOICE_IN_RATE, 3, &pcm, &m);
        free(mono);
        if (bad) goto out;
      }
      c->frames = (int)((m + VOICE_IN_FRAME - 1) / VOICE_IN_FRAME);
      c->pcm = calloc((size_t)c->frames * VOICE_IN_FRAME + 1, sizeof *c->pcm);
      if (c->pcm) memcpy(c->pcm, pcm, m * sizeof *pcm);
      free(pcm);
      rc = c->pcm && c->frames > 0 ? 0 : -1;
      goto out;
    }
    at = body + size + (size & 1);
  }
out:
  if (rc) fprintf(stderr, "%s: not a 16-bit PCM WAV file\n", path);
  free(buf);
  return rc;
}

/* "1632-1932,2200-2500": each pause's start and end, in ms, to frames. */
static int parse_gaps(struct turn_clip *t, const char *s) {
  t->ngaps = 0;
  while (*s && *s != '-' && t->ngaps < MAX_GAPS) {
    char *end;
    long a = strtol(s, &end, 10), b;
    if (*end != '-') return -1;
    b = strtol(end + 1, &end, 10);
    if (b <= a) return -1;
    t->gap[t->ngaps][0] = (int)(a / 20);
    t->gap[t->ngaps][1] = (int)((b + 19) / 20);
    t->ngaps++;
    s = *end == ',' ? end + 1 : end;
  }
  return 0;
}

/* turns.tsv: file, kind, pause_ms, pauses, voice, text; # starts a comment. */
static int load_turns(struct suite *s, const char *dir) {
  char path[1024], line[1024];
  snprintf(path, sizeof path, "%s/turns.tsv", dir);
  FILE *fp = fopen(path, "r");
  if (!fp) {
    fprintf(stderr, "%s: cannot open\n", path);
    return -1;
  }
  int rc = 0;
  while (rc == 0 && fgets(line, sizeof line, fp) && s->nturns < MAX_CLIPS) {
    line[strcspn(line, "\r\n")] = '\0';
    char *f[6], *save = NULL;
    int nf = 0;
    if (line[0] == '#' || !line[0]) continue;
    for (char *tok = strtok_r(line, "\t", &save); tok && nf < 6; tok = strtok_r(NULL, "\t", &save))
      f[nf++] = tok;
    struct turn_clip *t = &s->turns[s->nturns];
    if (nf < 6 || parse_gaps(t, f[3])) {
      fprintf(stderr, "%s: bad line for %s\n", path, nf ? f[0] : "?");
      rc = -1;
      break;
    }
    snprintf(t->c.name, sizeof t->c.name, "%s", f[0]);
    t->incomplete = !strcmp(f[1], "incomplete");
    t->pause_ms = atoi(f[2]);
    snprintf(t->voice, sizeof t->voice, "%s", f[4]);
    snprintf(t->text, sizeof t->text, "%s", f[5]);
    snprintf(path, sizeof path, "%s/%s", dir, f[0]);
    if (load_wav(&t->c, path)) rc = -1;
    else s->nturns++;
  }
  fclose(fp);
  return rc;
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const struct ns_class *)a)->c.name, ((const struct ns_class *)b)->c.name);
}

/*
 * The parts of a clip that trials play: a speech_* clip's NAME.txt lists its
 * utterances ("start_ms end_ms" a line), and each is played on its own with
 * half a second either side, so one detection is one utterance; any other
 * clip is played in pieces of at most CHUNK_FRAMES.
 */
static void segment(struct ns_class *c, const char *dir) {
  char path[1024], line[128];
  snprintf(path, sizeof path, "%s/%.*s.txt", dir, (int)(strlen(c->c.name) - 4), c->c.name);
  FILE *fp = c->speech ? fopen(path, "r") : NULL;
  long a, b;
  c->nseg = 0;
  while (fp && fgets(line, sizeof line, fp) && c->nseg < MAX_SEGS) {
    if (sscanf(line, "%ld %ld", &a, &b) != 2 || b <= a) continue;
    int lo = (int)((a - 500) / 20), hi = (int)((b + 500 + 19) / 20);
    c->seg[c->nseg][0] = lo < 0 ? 0 : lo;
    c->seg[c->nseg][1] = hi > c->c.frames ? c->c.frames : hi;
    c->nseg++;
  }
  if (fp) fclose(fp);
  int labelled = c->nseg > 0;
  for (int at = 0; !labelled && at < c->c.frames && c->nseg < MAX_SEGS; at += CHUNK_FRAMES) {
    c->seg[c->nseg][0] = at;
    c->seg[c->nseg][1] = at + CHUNK_FRAMES < c->c.frames ? at + CHUNK_FRAMES : c->c.frames;
    c->nseg++;
  }
  c->expect = c->speech ? c->nseg : 0;
}

/* Every *.wav of the directory, one class each, by name. */
static int load_nonspeech(struct suite *s, const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "%s: no non-speech clips\n", dir);
    return 0;
  }
  struct dirent *e;
  char path[1024];
  while ((e = readdir(d)) && s->nns < MAX_CLIPS) {
    size_t n = strlen(e->d_name);
    if (n < 5 || n >= sizeof s->ns[0].c.name || strcmp(e->d_name + n - 4, ".wav")) continue;
    struct ns_class *c = &s->ns[s->nns];
    memcpy(c->c.name, e->d_name, n + 1); /* n fits: checked above */
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (load_wav(&c->c, path)) continue;
    c->speech = !strncmp(e->d_name, "speech", 6);
    segment(c, dir);
    s->nns++;
  }
  closedir(d);
  qsort(s->ns, (size_t)s->nns, sizeof s->ns[0], by_name);
  return 0;
}

/* -- one trial -- */

static void note_turn(struct watch *w, int turn) {
  if (w->min_turn < 0 || turn < w->min_turn) w->min_turn = turn;
  if (turn > w->max_turn) w->max_turn = turn;
}

static void tt_event(void *user, char *json) {
  struct suite *s = user;
  struct watch *w = &s->w;
  json_t *ev = json_loads(json, 0, NULL);
  if (s->trace && !strstr(json, "\"level\""))
    fprintf(stderr, "  %5d ms %s\n", (w->f - s->play_at) * 20, json);
  free(json);
  const char *type = json_string_value(json_object_get(ev, "type"));
  /* A caller's turn is a final transcript with a turn number, and a latency event with
   * voice_to_voice_ms (a greeting's has neither); the numbers themselves may start at 0 or 1. */
  json_t *jturn = json_object_get(ev, "turn");
  int turn = (int)json_integer_value(jturn);
  const char *state = json_string_value(json_object_get(ev, "state"));
  if (!type) type = "";
  if (!strcmp(type, "state") && state) {
    snprintf(w->state, sizeof w->state, "%s", state);
    if (!strcmp(state, "user_speaking")) w->onsets++;
  } else if (!strcmp(type, "transcript") && json_is_true(json_object_get(ev, "final")) && jturn) {
    w->finals++;
    w->final_f = w->f;
    if (w->f < s->play_at + s->len) w->early_final = 1;
    const char *text = json_string_value(json_object_get(ev, "text"));
    snprintf(w->final_text, sizeof w->final_text, "%s", text ? text : "");
    note_turn(w, turn);
  } else if (!strcmp(type, "latency") && json_object_get(ev, "voice_to_voice_ms")) {
    w->nlatency++;
    w->latency_f = w->f;
    for (size_t i = 0; i < NFIG; i++) {
      json_t *v = json_object_get(ev, figures[i]);
      w->fig[i] = json_is_number(v) ? json_number_value(v) : NAN;
    }
    note_turn(w, turn);
  } else if (!strcmp(type, "reply") && w->reply_f < 0) {
    w->reply_f = w->f;
    w->interrupted = json_is_true(json_object_get(ev, "interrupted"));
  }
  json_decref(ev);
}

/* The agent's frame for this tick: a pause is audio that stops while the reply is still on. */
static void tt_spoke(struct suite *s, int audio) {
  struct watch *w = &s->w;
  if (audio && w->first_audio < 0) w->first_audio = w->f;
  if (!audio && w->last_audio_out && w->first_audio >= 0 && w->reply_f < 0) w->pauses++;
  w->last_audio_out = audio;
}

static void tt_kick(void *user) {
  struct suite *s = user;
  int16_t out[F];
  if (voice_agent_speak_again(s->va, out)) tt_spoke(s, 1);
}

static struct ns_class *tt_class(struct suite *s) {
  int i = s->step - 1 - s->nturns;
  return i >= 0 && i < s->nns ? &s->ns[i] : &s->control;
}

/* What the caller's microphone gives on this tick (NULL: nothing, as the old mode). */
static const int16_t *tt_input(struct suite *s) {
  struct watch *w = &s->w;
  if (s->kind == TK_OVER) {
    if (!s->play_at && w->first_audio >= 0) s->play_at = w->first_audio + OVER_DELAY;
    if (!s->play_at || w->reply_f >= 0) return NULL;
  }
  int i = w->f - s->play_at;
  if (i < 0 || i >= s->len) return NULL;
  if (s->kind == TK_OVER) tt_class(s)->over_frames++;
  if (s->kind == TK_LISTEN) tt_class(s)->listen_frames++;
  return s->clip ? s->clip->pcm + (size_t)(s->from + i) * VOICE_IN_FRAME : NULL;
}

static int tt_done(const struct suite *s) {
  const struct watch *w = &s->w;
  int end = s->play_at + s->len;
  switch (s->kind) {
  case TK_COMPLETE:
  case TK_INCOMPLETE:
    return w->f >= end && ((w->latency_f >= end && w->f >= w->latency_f + 10) || w->f >= end + 300);
  case TK_LISTEN:
    return (w->f >= end + 150 && !strcmp(w->state, "listening")) || w->f >= end + 750;
  case TK_OVER:
    if (w->first_audio < 0) return w->f >= 500;
    return w->reply_f >= 0 ||
           (s->play_at && w->f >= end + 50 && w->last_audio_out && !strcmp(w->state, "speaking")) ||
           (s->play_at && w->f >= end + 500);
  }
  return 1;
}

static int tt_plan(struct suite *s) {
  s->play_at = LEAD_FRAMES;
  s->from = 0;
  if (s->step == 0) { /* the control: the greeting over silence */
    s->kind = TK_OVER;
    s->clip = NULL;
    s->len = 400;
    s->play_at = 0;
    return 1;
  }
  int i = s->step - 1;
  if (i < s->nturns) {
    const struct turn_clip *t = &s->turns[i];
    s->kind = t->incomplete ? TK_INCOMPLETE : TK_COMPLETE;
    s->clip = &t->c;
    s->len = t->c.frames;
    s->gap_hi = t->ngaps ? LEAD_FRAMES + t->gap[t->ngaps - 1][1] : 0;
    return 1;
  }
  struct ns_class *c = tt_class(s);
  if (c == &s->control) return 0;
  s->substeps = 2 * c->nseg;
  s->kind = s->sub % 2 ? TK_OVER : TK_LISTEN;
  s->clip = &c->c;
  s->from = c->seg[s->sub / 2][0];
  s->len = c->seg[s->sub / 2][1] - s->from;
  if (s->kind == TK_OVER) s->play_at = 0;
  return 1;
}

static void tt_advance(struct suite *s) {
  if (s->step > s->nturns && ++s->sub < s->substeps) return;
  s->sub = 0;
  s->step++;
}

static int tt_begin(struct suite *s) {
  static const char *const kinds[] = {"complete", "incomplete", "listen", "over"};
  if (!tt_plan(s)) return 0;
  s->w = (struct watch){.first_audio = -1, .reply_f = -1, .latency_f = -1, .final_f = -1, .f = -1,
                        .min_turn = -1, .max_turn = -1};
  struct voice_settings set = {.has_greeting = 1};
  if (s->kind == TK_OVER) snprintf(set.greeting, sizeof set.greeting, "%s", long_greeting);
  struct agent_host host = {tt_event, on_end, tt_kick, s};
  if (voice_agent_new(&s->va, "bench", s->cfg, s->eng, s->home, &set, &host)) return 0;
  fprintf(stderr, "%-10s %s%s\n", kinds[s->kind], s->clip ? s->clip->name : "(silence)",
          s->from ? " (continued)" : "");
  voice_agent_start(s->va);
  return 1;
}

/* The last word of `expected` (letters only) is among what was heard. */
static int heard_end(const char *heard, const char *expected) {
  char word[64] = "", low[512];
  size_t n = 0, i;
  for (const char *p = expected; *p; p++) {
    if ((*p | 32) >= 'a' && (*p | 32) <= 'z') {
      if (n == 0) word[0] = '\0';
      if (n + 1 < sizeof word) word[n++] = (char)(*p | 32), word[n] = '\0';
    } else if (n) {
      n = 0;
    }
  }
  for (i = 0; heard[i] && i + 1 < sizeof low; i++) low[i] = (char)(heard[i] | 32);
  low[i] = '\0';
  return word[0] && strstr(low, word) != NULL;
}

static struct pause_stats *pause_row(struct suite *s, int ms) {
  for (int i = 0; i < s->npause; i++)
    if (s->by_pause[i].ms == ms) return &s->by_pause[i];
  if (s->npause == 8) return &s->by_pause[7];
  s->by_pause[s->npause].ms = ms;
  return &s->by_pause[s->npause++];
}

/* An incomplete phrase: did the agent take the caller's turn before they were done? */
static void judge_incomplete(struct suite *s, const struct turn_clip *t, json_t *tr) {
  const struct watch *w = &s->w;
  int end = s->play_at + s->len;
  int audio = w->first_audio >= 0 && w->first_audio < end;
  int missed = w->finals == 0;
  int split = !missed && (w->max_turn > w->min_turn || w->final_f < s->gap_hi);
  int heard = heard_end(w->final_text, t->text);
  struct pause_stats *p = pause_row(s, t->pause_ms);
  p->n++;
  p->early += w->early_final;
  p->audio += audio;
  p->split += split;
  p->missed += missed;
  p->heard += heard;
  if (w->latency_f >= end && s->n_incomplete < MAX_CLIPS)
    s->v2v_incomplete[s->n_incomplete++] = w->fig[V2V];
  json_object_set_new(tr, "pause_ms", json_integer(t->pause_ms));
  json_object_set_new(tr, "audio_in_pause", json_boolean(audio));
  json_object_set_new(tr, "split", json_boolean(split));
  json_object_set_new(tr, "missed", json_boolean(missed));
  json_object_set_new(tr, "rest_heard", json_boolean(heard));
}

static void tt_finish(struct suite *s) {
  static const char *const kinds[] = {"complete", "incomplete", "listen", "over"};
  const struct watch *w = &s->w;
  int end = s->play_at + s->len;
  int turns = w->finals || w->nlatency ? w->max_turn - w->min_turn + 1 : 0;
  json_t *tr = json_pack("{s:s,s:s,s:f,s:f,s:i,s:i,s:i,s:i,s:s}", "clip",
                         s->clip ? s->clip->name : "(silence)", "kind", kinds[s->kind], "from_s",
                         s->from * 0.02, "seconds", s->len * 0.02, "onsets", w->onsets, "finals",
                         w->finals, "turns", turns, "replies", w->nlatency, "heard", w->final_text);
  if (w->nlatency) json_object_set_new(tr, "voice_to_voice_ms", json_real(w->fig[V2V]));
  if (w->first_audio >= 0)
    json_object_set_new(tr, "first_audio_ms", /* the greeting's from the trial's start */
                        json_integer((w->first_audio - (s->kind == TK_OVER ? 0 : s->play_at)) * 20));
  if (w->final_f >= 0)
    json_object_set_new(tr, "final_ms", json_integer((w->final_f - s->play_at) * 20));
  if (s->kind == TK_COMPLETE || s->kind == TK_INCOMPLETE)
    json_object_set_new(tr, "early_end", json_boolean(w->early_final));
  struct ns_class *c = tt_class(s);
  switch (s->kind) {
  case TK_COMPLETE:
    for (size_t i = 0; i < NFIG && w->latency_f >= end; i++)
      if (!isnan(w->fig[i])) s->complete[i][s->n_complete[i]++] = w->fig[i];
    s->complete_split += w->max_turn > w->min_turn || w->early_final;
    break;
  case TK_INCOMPLETE:
    judge_incomplete(s, &s->turns[s->step - 1], tr);
    break;
  case TK_LISTEN:
    c->listen_plays++;
    c->onsets += w->onsets;
    c->turns += w->finals;
    c->replies += w->nlatency;
    c->detected += w->finals > 0;
    break;
  case TK_OVER:
    c->over_plays++;
    c->pauses += w->pauses;
    c->interrupts += w->interrupted;
    c->barged += w->pauses || w->interrupted;
    json_object_set_new(tr, "pauses", json_integer(w->pauses));
    json_object_set_new(tr, "interrupted", json_boolean(w->interrupted));
    if (w->first_audio < 0) fprintf(stderr, "  the greeting never played\n");
    break;
  }
  json_array_append_new(s->trials, tr);
  if (w->finals) fprintf(stderr, "  heard: %s\n", w->final_text);
  voice_agent_free(s->va);
  s->va = NULL;
}

static void tt_tick(uv_timer_t *t) {
  struct suite *s = t->data;
  int16_t out[F];
  s->w.f++;
  voice_agent_hear(s->va, tt_input(s));
  tt_spoke(s, voice_agent_speak(s->va, out));
  if (!tt_done(s)) return;
  tt_finish(s);
  tt_advance(s);
  if (!tt_begin(s)) {
    uv_timer_stop(&s->tick);
    uv_stop(s->loop);
  }
}

/* -- the report -- */

static json_t *dist(double *v, int n, const char *label, FILE *out) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  double p50 = pct(v, n, 50), p95 = pct(v, n, 95), mx = n ? v[n - 1] : NAN;
  fprintf(out, "%-34s %4d %9.1f %9.1f %9.1f\n", label, n, p50, p95, mx);
  return json_pack("{s:i,s:f,s:f,s:f}", "n", n, "p50", n ? p50 : 0, "p95", n ? p95 : 0, "max",
                   n ? mx : 0);
}

static double per_min(int events, int frames) { return frames ? events * 3000.0 / frames : 0; }

static int by_pause(const void *a, const void *b) {
  return ((const struct pause_stats *)a)->ms - ((const struct pause_stats *)b)->ms;
}

static json_t *report_turns(struct suite *s) {
  json_t *j = json_object();
  qsort(s->by_pause, (size_t)s->npause, sizeof s->by_pause[0], by_pause);
  json_t *c = json_object();
  printf("\n%-34s %4s %9s %9s %9s\n", "complete sentences (ms)", "n", "p50", "p95", "max");
  for (size_t i = 0; i < NFIG; i++)
    json_object_set_new(c, figures[i], dist(s->complete[i], s->n_complete[i], figures[i], stdout));
  json_object_set_new(j, "complete", c);
  json_object_set_new(j, "incomplete_voice_to_voice_ms",
                      dist(s->v2v_incomplete, s->n_incomplete, "incomplete: voice_to_voice_ms",
                           stdout));
  json_object_set_new(j, "complete_split", json_integer(s->complete_split));
  printf("complete sentences answered as more than one turn: %d\n", s->complete_split);
  printf("\n%-9s %4s %11s %15s %6s %7s %11s\n", "pause_ms", "n", "ended_early", "audio_in_pause",
         "split", "missed", "rest_heard");
  json_t *rows = json_array();
  struct pause_stats all = {0};
  for (int i = 0; i <= s->npause; i++) {
    struct pause_stats *p = i < s->npause ? &s->by_pause[i] : &all;
    if (i < s->npause) {
      printf("%-9d", p->ms);
      all.n += p->n, all.early += p->early, all.audio += p->audio, all.split += p->split;
      all.missed += p->missed, all.heard += p->heard;
    } else {
      printf("%-9s", "all");
    }
    printf(" %4d %11d %15d %6d %7d %11d\n", p->n, p->early, p->audio, p->split, p->missed,
           p->heard);
    json_array_append_new(rows, json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "pause_ms", p->ms, "n",
                                          p->n, "ended_early", p->early, "audio_in_pause", p->audio,
                                          "split", p->split, "missed", p->missed, "rest_heard",
                                          p->heard));
  }
  json_object_set_new(j, "incomplete", rows);
  return j;
}

static json_t *class_json(const struct ns_class *c) {
  return json_pack("{s:f,s:i,s:i,s:i,s:f,s:f,s:f,s:f,s:i,s:i,s:f,s:f,s:b}", "listen_s",
                   c->listen_frames * 0.02, "onsets", c->onsets, "turns", c->turns, "replies",
                   c->replies, "onsets_per_min", per_min(c->onsets, c->listen_frames),
                   "turns_per_min", per_min(c->turns, c->listen_frames), "replies_per_min",
                   per_min(c->replies, c->listen_frames), "over_s", c->over_frames * 0.02,
                   "pauses", c->pauses, "interrupts", c->interrupts, "pauses_per_min",
                   per_min(c->pauses, c->over_frames), "interrupts_per_min",
                   per_min(c->interrupts, c->over_frames), "speech", c->speech);
}

static json_t *report_class(const struct ns_class *c, const char *name) {
  printf("%-24s %7.1f %6d %5d %7d %9.2f | %7.1f %6d %10d %10.2f %10.2f\n", name,
         c->listen_frames * 0.02, c->onsets, c->turns, c->replies,
         per_min(c->turns, c->listen_frames), c->over_frames * 0.02, c->pauses, c->interrupts,
         per_min(c->pauses, c->over_frames), per_min(c->interrupts, c->over_frames));
  return class_json(c);
}

static json_t *report_nonspeech(struct suite *s) {
  json_t *j = json_object();
  printf("\n%-24s %7s %6s %5s %7s %9s | %7s %6s %10s %10s %10s\n", "while listening (false)",
         "secs", "onsets", "turns", "replies", "turns/min", "speaking", "pauses", "interrupts",
         "pauses/min", "intr/min");
  json_object_set_new(j, "control", report_class(&s->control, "(silence, control)"));
  int speech = 0;
  for (int i = 0; i < s->nns; i++) {
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)strlen(s->ns[i].c.name) - 4, s->ns[i].c.name);
    if (s->ns[i].speech) speech++;
    else json_object_set_new(j, name, report_class(&s->ns[i], name));
  }
  if (!s->nns) printf("(no non-speech clips)\n");
  if (!speech) return j;
  printf("\n%-24s %16s %20s\n", "speech in noise", "turns/expected", "barge-ins/plays");
  for (int i = 0; i < s->nns; i++) {
    struct ns_class *c = &s->ns[i];
    char name[64];
    if (!c->speech) continue;
    snprintf(name, sizeof name, "%.*s", (int)strlen(c->c.name) - 4, c->c.name);
    printf("%-24s %9d/%-6d %13d/%-6d\n", name, c->detected, c->expect, c->barged, c->over_plays);
    json_t *o = class_json(c);
    json_object_set_new(o, "turns_detected", json_integer(c->detected));
    json_object_set_new(o, "turns_expected", json_integer(c->expect));
    json_object_set_new(o, "barge_ins_detected", json_integer(c->barged));
    json_object_set_new(o, "plays_over_reply", json_integer(c->over_plays));
    json_object_set_new(j, name, o);
  }
  return j;
}

static void free_clips(struct suite *s) {
  for (int i = 0; i < s->nturns; i++) free(s->turns[i].c.pcm);
  for (int i = 0; i < s->nns; i++) free(s->ns[i].c.pcm);
}

static int run_turntaking(const struct config *cfg, const char *turns_dir, const char *ns_dir,
                          const char *json_path, json_t *overrides, int trace) {
  static struct suite s;
  static struct rig r;
  int rc = 1;
  s.trace = trace;
  if (load_turns(&s, turns_dir) || load_nonspeech(&s, ns_dir)) goto out;
  fprintf(stderr, "%d turn clips from %s, %d non-speech clips from %s\n", s.nturns, turns_dir,
          s.nns, ns_dir);
  s.cfg = cfg;
  s.loop = &r.loop;
  s.trials = json_array();
  if (rig_open(&r, cfg, on_home, &s)) goto out;
  s.eng = r.eng;
  s.home = r.home;
  uint64_t t0 = uv_hrtime();
  uv_timer_init(&r.loop, &s.tick);
  s.tick.data = &s;
  if (tt_begin(&s)) {
    uv_timer_start(&s.tick, tt_tick, 20, 20);
    uv_run(&r.loop, UV_RUN_DEFAULT);
  }
  double secs = (double)(uv_hrtime() - t0) / 1e9;
  voice_agent_free(s.va);
  uv_close((uv_handle_t *)&s.tick, NULL);
  rig_close(&r);

  printf("\nturn-taking: asr %s, llm %s, tts %s, endpoint_ms %d; %d turns, %.0f s\n", cfg->asr,
         cfg->llm, cfg->tts, cfg->endpoint_ms, s.nturns, secs);
  json_t *root = json_pack("{s:s,s:s,s:s,s:s,s:i,s:o,s:i,s:f}", "suite", "turntaking", "asr",
                           cfg->asr, "llm", cfg->llm, "tts", cfg->tts, "endpoint_ms",
                           cfg->endpoint_ms, "set", json_incref(overrides), "turns", s.nturns,
                           "seconds", secs);
  json_t *turn_figures = report_turns(&s);
  json_object_update(root, turn_figures);
  json_decref(turn_figures);
  json_object_set_new(root, "nonspeech", report_nonspeech(&s));
  json_object_set(root, "trials", s.trials);
  if (json_path && json_dump_file(root, json_path, JSON_INDENT(2)) != 0)
    fprintf(stderr, "cannot write %s\n", json_path);
  json_decref(root);
  rc = 0;
out:
  json_decref(s.trials);
  free_clips(&s);
  return rc;
}

/* tests/fixtures/audio/SUB from the source tree or the build directory beneath it. */
static const char *fixture_dir(char *buf, size_t cap, const char *sub) {
  snprintf(buf, cap, "../tests/fixtures/audio/%s", sub);
  uv_fs_t req;
  int missing = uv_fs_stat(NULL, &req, buf, NULL) != 0;
  uv_fs_req_cleanup(&req);
  if (missing) snprintf(buf, cap, "tests/fixtures/audio/%s", sub);
  return buf;
}

/* --set KEY=VALUE: a configuration key by its name, as in the file. */
static int set_key(struct config *cfg, const char *kv, json_t *overrides) {
  char key[128], err[512];
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof key) {
    fprintf(stderr, "--set wants KEY=VALUE, not %s\n", kv);
    return -1;
  }
  snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
  if (config_set(cfg, key, eq + 1, "--set", err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  json_object_set_new(overrides, key, json_string(eq + 1));
  return 0;
}

int main(int argc, char **argv) {
  static char turns_buf[1024], ns_buf[1024];
  struct config cfg;
  config_defaults(&cfg);
  cfg.idle_prompt_ms = cfg.idle_hangup_ms = 0;
  const char *json_path = NULL, *suite = NULL;
  const char *turns_dir = fixture_dir(turns_buf, sizeof turns_buf, "turns");
  const char *ns_dir = fixture_dir(ns_buf, sizeof ns_buf, "nonspeech");
  int turns = 20, trace = 0, rc;
  char err[512];
  json_t *overrides = json_object();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--turns")) turns = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--json")) json_path = argv[i + 1];
    else if (!strcmp(argv[i], "--suite")) suite = argv[i + 1];
    else if (!strcmp(argv[i], "--clips")) turns_dir = argv[i + 1];
    else if (!strcmp(argv[i], "--nonspeech")) ns_dir = argv[i + 1];
    else if (!strcmp(argv[i], "--trace")) trace = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--set") ? set_key(&cfg, argv[i + 1], overrides) != 0
             : config_set(&cfg, argv[i] + 2, argv[i + 1], "flag", err, sizeof err) != 0) {
      if (strcmp(argv[i], "--set")) fprintf(stderr, "%s\n", err);
      json_decref(overrides);
      return 2;
    }
  }
  if (suite && strcmp(suite, "turntaking")) {
    fprintf(stderr, "unknown suite %s (there is: turntaking)\n", suite);
    json_decref(overrides);
    return 2;
  }
  if (turns < 1 || turns > MAX_TURNS) turns = 20;
  log_configure(getenv("TS_BENCH_DEBUG") ? LOG_DEBUG : LOG_WARN, 0); /* the agent's reasoning */
  if (tts_flite_voices_acquire()) return 1;
  rc = suite ? run_turntaking(&cfg, turns_dir, ns_dir, json_path, overrides, trace)
             : run_questions(&cfg, turns, json_path);
  tts_flite_voices_release();
  json_decref(overrides);
  return rc;
}
