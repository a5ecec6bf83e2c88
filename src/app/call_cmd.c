/*
 * tingshuo call URL --play in.wav [--record out.wav] [--echo GAIN:DELAY_MS]
 *                   [--config JSON|FILE] [--token TOKEN] [--timeout S] [--insecure]
 *                   [--loss PCT] [--jitter MS] [--gain G] [--offset-ms MS] [--seed N]
 *
 * Places one call the way a browser would, with a WAV file for a
 * microphone: the file is sent in real time as 20 ms Opus frames once media
 * flows, then silence. What comes back is played out through a jitter
 * buffer into --record (silence included, so the recording keeps the
 * call's timeline). Server events are printed one per line on stdout,
 * stamped with seconds since the start.
 *
 * The call hangs up by itself when the file has been played and the
 * server has gone quiet: its reply heard and 2 s of silence after it (or
 * 10 s with no reply at all), and no turn in progress (state events).
 * It fails (exit status 1) on no answer, ICE or DTLS failure, an error
 * event, an end the server chose, or --timeout.
 */
#include "app/call_cmd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/args.h"
#include "client/caller.h"
#include "client/cloop.h"
#include "client/events.h"
#include "client/wav.h"

#define SILENCE_DB -45.0
#define QUIET_AFTER_REPLY_MS 2000
#define NO_REPLY_MS 10000

struct call_opts {
  const char *url, *play, *record, *config, *token;
  double gain, timeout_s;
  int delay_ms, insecure;
  /* impairment of what is sent (recognition benches) */
  double loss_pct, level, offset_ms, jitter_ms, seed;
};

struct call_run {
  struct call_opts o;
  struct cloop l;
  struct ws_url url;
  struct caller *caller;
  struct wav_writer *rec;
  json_t *config;
  int16_t *pcm;
  size_t frames, pos; /* in 20 ms frames */
  uint64_t start_ms, play_end_ms, last_voice_ms;
  int heard, busy, saw_error, failed, done;
  char why[320];
};

void call_cmd_usage(FILE *out) {
  fprintf(out,
          "Usage: tingshuo call URL --play IN.wav [options]\n\n"
          "Calls the server at URL (ws://, wss://, or the http(s):// address it prints) over\n"
          "WebRTC, speaks IN.wav, prints the server's events, and records what it hears.\n\n"
          "  --play FILE          WAV to speak (any rate and channels)\n"
          "  --record FILE        write what is heard to FILE (48 kHz mono WAV)\n"
          "  --echo GAIN:DELAY_MS also send back what is heard, like a speakerphone\n"
          "  --config JSON|FILE   per-call settings (docs/protocol.md), e.g. '{\"language\":\"en\"}'\n"
          "  --token TOKEN        call token, for a server with call_auth = token (tingshuo token)\n"
          "  --timeout S          give up after S seconds (default 60)\n"
          "  --insecure           accept any TLS certificate for wss:// (self-signed servers)\n"
          "  --loss PCT           lose PCT %% of the RTP packets sent (0-50)\n"
          "  --jitter MS          hold each sent packet back 0..MS ms at random (0-200)\n"
          "  --gain G             scale IN.wav by G before sending (0.01-10)\n"
          "  --offset-ms MS       start IN.wav MS ms later (0-1000; fractions of a frame too)\n"
          "  --seed N             seed for --loss and --jitter, for a repeatable run\n\n"
          "Exit status: 0 when the call completed, 1 when it failed, 2 on bad usage.\n");
}

static int parse_opts(int argc, char **argv, struct call_opts *o, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->timeout_s = 60;
  o->level = 1;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int takes = 1, rc = 0;
    if (strcmp(a, "--play") == 0) o->play = v;
    else if (strcmp(a, "--record") == 0) o->record = v;
    else if (strcmp(a, "--config") == 0) o->config = v;
    else if (strcmp(a, "--token") == 0) o->token = v;
    else if (strcmp(a, "--echo") == 0) rc = args_echo(v, &o->gain, &o->delay_ms, err, errlen);
    else if (strcmp(a, "--timeout") == 0)
      rc = args_number("--timeout", v, 1, 86400, &o->timeout_s, err, errlen);
    else if (strcmp(a, "--loss") == 0) rc = args_number(a, v, 0, 50, &o->loss_pct, err, errlen);
    else if (strcmp(a, "--jitter") == 0) rc = args_number(a, v, 0, 200, &o->jitter_ms, err, errlen);
    else if (strcmp(a, "--gain") == 0) rc = args_number(a, v, 0.01, 10, &o->level, err, errlen);
    else if (strcmp(a, "--offset-ms") == 0)
      rc = args_number(a, v, 0, 1000, &o->offset_ms, err, errlen);
    else if (strcmp(a, "--seed") == 0) rc = args_number(a, v, 0, 4294967295.0, &o->seed, err, errlen);
    else if (strcmp(a, "--insecure") == 0) o->insecure = 1, takes = 0;
    else if (a[0] == '-') return snprintf(err, errlen, "unknown flag %s", a), -EINVAL;
    else if (!o->url) o->url = a, takes = 0;
    else return snprintf(err, errlen, "unexpected argument \"%s\"", a), -EINVAL;
    if (rc) return rc;
    if (takes && !v) return snprintf(err, errlen, "%s needs a value", a), -EINVAL;
    i += takes;
  }
  if (!o->url) return snprintf(err, errlen, "no URL given"), -EINVAL;
  if (!o->play) return snprintf(err, errlen, "--play FILE is required"), -EINVAL;
  return 0;
}

/* --config takes JSON text or a file holding it; either must be an object. */
static json_t *load_config(const char *arg, char *err, size_t errlen) {
  json_error_t je;
  json_t *v = arg[0] == '{' ? json_loads(arg, 0, &je) : json_load_file(arg, 0, &je);
  if (!v) snprintf(err, errlen, "--config: %s (line %d)", je.text, je.line);
  else if (!json_is_object(v)) {
    snprintf(err, errlen, "--config: per-call settings must be a JSON object");
    json_decref(v);
    v = NULL;
  }
  return v;
}

static double secs(struct call_run *r) { return (double)(cloop_now(&r->l) - r->start_ms) / 1000.0; }

static void on_message(void *user, const char *type, json_t *msg) {
  struct call_run *r = user;
  char line[2048];
  if (events_format(msg, line, sizeof line) == 0) {
    printf("[%7.3f] %s\n", secs(r), line);
    fflush(stdout);
  }
  if (strcmp(type, "error") == 0) r->saw_error = 1;
  if (strcmp(type, "state") == 0) {
    const char *st = json_string_value(json_object_get(msg, "state"));
    r->busy = st && strcmp(st, "listening") != 0;
  }
}

static void on_connected(void *user) {
  struct call_run *r = user;
  printf("[%7.3f] media: ICE and DTLS done, sending %s\n", secs(r), r->o.play);
  fflush(stdout);
}

static void on_end(void *user, int failed, const char *why) {
  struct call_run *r = user;
  r->failed |= failed;
  if (!r->why[0]) snprintf(r->why, sizeof r->why, "%s", why);
  r->done = 1;
  cloop_stop(&r->l);
}

static void on_rx(void *user, const struct peer_rx *rx) {
  struct call_run *r = user;
  if (rx->level_db > SILENCE_DB) {
    r->last_voice_ms = cloop_now(&r->l);
    if (r->pos >= r->frames) r->heard = 1;
    else r->heard |= r->pos > 0;
  }
}

static void on_playout(void *user, const int16_t *pcm) {
  struct call_run *r = user;
  static const int16_t zeros[OPUSC_FRAME];
  if (r->rec && wav_writer_write(r->rec, pcm ? pcm : zeros, OPUSC_FRAME)) {
    fprintf(stderr, "tingshuo call: cannot write %s\n", r->o.record);
    wav_writer_close(r->rec);
    r->rec = NULL;
  }
}

static void finish(struct call_run *r, int failed, const char *why) {
  if (r->done || !r->caller) return;
  if (failed) {
    r->failed = 1;
    snprintf(r->why, sizeof r->why, "%s", why);
  }
  caller_hangup(r->caller);
}

static void on_tick(void *user, uint64_t now) {
  struct call_run *r = user;
  if (r->done) return;
  if (now > r->start_ms + (uint64_t)(r->o.timeout_s * 1000)) {
    char why[100];
    snprintf(why, sizeof why, "timed out after %.0f s", r->o.timeout_s);
    finish(r, 1, why);
    return;
  }
  const int16_t *frame = NULL;
  if (caller_connected(r->caller) && r->pos < r->frames) {
    frame = r->pcm + r->pos++ * OPUSC_FRAME;
    if (r->pos == r->frames) r->play_end_ms = now;
  }
  caller_tick(r->caller, now, frame, NULL, 0);
  if (!r->play_end_ms || r->busy) return;
  uint64_t last = r->last_voice_ms > r->play_end_ms ? r->last_voice_ms : r->play_end_ms;
  int64_t since = (int64_t)now - (int64_t)last;
  if ((r->heard && since >= QUIET_AFTER_REPLY_MS) || since >= NO_REPLY_MS) finish(r, 0, NULL);
}

static void on_signal(void *user, int signum) {
  finish(user, 1, "interrupted");
}

static int load_audio(struct call_run *r, char *err, size_t errlen) {
  struct wav w;
  int rc = wav_read(r->o.play, &w, err, errlen);
  if (rc) return rc;
  size_t n = 0;
  int16_t *mono = NULL;
  rc = wav_mono48k(&w, &mono, &n);
  wav_free(&w);
  if (rc) return snprintf(err, errlen, "%s: out of memory", r->o.play), rc;
  /* --offset-ms: leading silence, to any sample, so the speech falls anywhere in a frame */
  size_t lead = (size_t)(r->o.offset_ms * OPUSC_RATE / 1000.0 + 0.5);
  r->frames = (lead + n + OPUSC_FRAME - 1) / OPUSC_FRAME;
  r->pcm = calloc(r->frames * OPUSC_FRAME + 1, sizeof(int16_t));
  for (size_t i = 0; r->pcm && i < n; i++) {
    double v = mono[i] * r->o.level;
    r->pcm[lead + i] = (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
  }
  free(mono);
  return r->pcm ? 0 : -ENOMEM;
}

static int start(struct call_run *r, char *err, size_t errlen) {
  int rc = ws_url_parse(r->o.url, &r->url, err, errlen);
  if (rc == 0) rc = load_audio(r, err, errlen);
  if (rc == 0 && r->o.config && !(r->config = load_config(r->o.config, err, errlen))) rc = -EINVAL;
  if (rc == 0 && r->o.record && wav_writer_open(&r->rec, r->o.record, OPUSC_RATE, 1)) {
    snprintf(err, errlen, "cannot write %s", r->o.record);
    rc = -EIO;
  }
  if (rc) return rc;
  if ((rc = cloop_init(&r->l, r->o.insecure, err, errlen))) return rc;
  r->l.user = r;
  r->l.on_tick = on_tick;
  r->l.on_signal = on_signal;
  r->start_ms = cloop_now(&r->l);
  char ip[64] = "";
  caller_local_ip(r->url.host, ip, sizeof ip);
  struct caller_params cp = {
      .ws = r->l.ws, .url = &r->url, .config = r->config, .token = r->o.token, .user = r,
      .on_message = on_message, .on_connected = on_connected, .on_end = on_end,
      .peer = {.dtls = r->l.dtls, .fingerprint = cloop_fingerprint(&r->l),
               .local_ip = ip[0] ? ip : NULL, .playout = 1, .echo_gain = r->o.gain,
               .echo_delay_ms = r->o.delay_ms, .loss_pct = r->o.loss_pct,
               .jitter_ms = (int)r->o.jitter_ms, .seed = (uint32_t)r->o.seed, .user = r, .on_rx = on_rx,
               .on_playout = on_playout}};
  rc = caller_start(&r->caller, &r->l.loop, &cp, err, errlen);
  if (rc) cloop_stop(&r->l);
  return rc;
}

int call_cmd_main(int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      call_cmd_usage(stdout);
      return 0;
    }
  static struct call_run r; /* large; one per process */
  memset(&r, 0, sizeof r);
  char err[512] = "";
  if (parse_opts(argc, argv, &r.o, err, sizeof err)) {
    fprintf(stderr, "tingshuo call: %s\n", err);
    call_cmd_usage(stderr);
    return 2;
  }
  int rc = start(&r, err, sizeof err);
  if (r.l.ws || r.caller) cloop_run(&r.l);
  caller_free(r.caller);
  if (r.l.dtls) cloop_free(&r.l);
  int status = 0;
  if (rc) {
    fprintf(stderr, "tingshuo call: %s\n", err);
    status = 1;
  } else if (r.failed) {
    fprintf(stderr, "tingshuo call: call failed: %s\n", r.why);
    status = 1;
  } else if (r.saw_error) {
    fprintf(stderr, "tingshuo call: the server reported an error during the call\n");
    status = 1;
  }
  if (r.rec && wav_writer_close(r.rec) && !status) {
    fprintf(stderr, "tingshuo call: cannot finish %s\n", r.o.record);
    status = 1;
  }
  json_decref(r.config);
  free(r.pcm);
  return status;
}
