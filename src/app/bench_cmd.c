/*
 * tingshuo bench URL --calls N --duration S [--json FILE] [--find-max]
 *                    [--echo GAIN:DELAY_MS [--echo-later GAIN]] [--wav IN.wav]
 *                    [--server-pid PID]
 * tingshuo bench --codec-floor [--wav IN.wav]
 *
 * The caller's utterance is real speech unless --wav says otherwise: flite's
 * male voice asking DEFAULT_UTTERANCE, synthesised at start-up. A synthetic
 * voiced signal lets an echo canceller look better than it is (its envelope
 * is regular, its pitch steady), and a bench that cannot show the failures
 * callers hear is no bench.
 *
 * Runs client/loadgen.c against a server and reports what it measured as
 * a table on stdout and, with --json, a file. --find-max repeats the run
 * with more and more calls (10, 20, 40, 80, 120, 160, 200, then +80 each
 * time) until one fails the bounds, then bisects between the last that
 * passed and the first that failed, and reports the largest N that held:
 *
 *   no failed call, lost and late frames each under 0.1 % of those
 *   expected, and the p99 of the server's outbound frame jitter under
 *   10 ms.
 *
 * Beside the server's CPU per call it prints the codec floor
 * (client/codecfloor.h): one call's Opus decode and encode, timed here, on
 * the same utterance, so a reader can see how much of a call's CPU is the
 * codec work no server can skip and how much is everything else. And memory
 * per call is (peak RSS - RSS before the first call) / N, the peak from the
 * server's own high-water mark when it rose during the run; on a freshly
 * started server that is what N calls cost beyond what is shared.
 */
#include "app/bench_cmd.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "agent/voice.h"
#include "client/args.h"
#include "client/codecfloor.h"
#include "client/loadgen.h"
#include "client/wav.h"
#include "engines/tts/flite_voices.h"

#define MAX_LOSS_RATIO 0.001
#define MAX_JITTER_P99_MS 10.0
#define MAX_ROUNDS 24
#define DEFAULT_UTTERANCE "What is seven plus five?"
#define DEFAULT_VOICE "rms"
#define FLOOR_CPU_S 0.5 /* CPU time each half of the codec floor is timed for */

struct bench_opts {
  const char *url_text, *json, *wav, *token;
  struct ws_url url;
  long calls, max_calls, barge_every, pid;
  double duration_s, gain;
  int delay_ms, find_max, insecure, codec_floor_only;
  double echo_later; /* > 0: the echo's gain from the middle of each call on */
};

void bench_cmd_usage(FILE *out) {
  fprintf(out,
          "Usage: tingshuo bench URL --calls N --duration S [options]\n"
          "       tingshuo bench --codec-floor [--wav FILE]\n\n"
          "N concurrent calls against the server at URL, each speaking an utterance, waiting\n"
          "for the reply, pausing, and every few turns interrupting the reply (barge-in).\n"
          "Prints voice-to-voice latency, barge-in stop time, lost/late frames, outbound\n"
          "jitter, false interruptions, and the server's CPU and memory.\n\n"
          "  --calls N            concurrent calls (default 10)\n"
          "  --duration S         seconds each call lasts once connected (default 30)\n"
          "  --json FILE          also write the results as JSON\n"
          "  --find-max           ramp N up, then bisect: the largest N within the bounds\n"
          "                       (no failed call, lost and late < 0.1%%, p99 jitter < 10 ms)\n"
          "  --max-calls N        --find-max stops here (default 1000)\n"
          "  --echo GAIN:DELAY_MS every call's microphone also carries back what it hears\n"
          "  --echo-later GAIN    with --echo: halfway through each call the echo's gain\n"
          "                       becomes GAIN, over 200 ms (the caller turns the volume)\n"
          "  --wav FILE           the utterance to speak (default: flite's rms voice saying\n"
          "                       \"" DEFAULT_UTTERANCE "\")\n"
          "  --barge-every N      every N-th turn interrupts the reply (default 4; 0 = never)\n"
          "  --server-pid PID     read the server's CPU and memory from /proc/PID\n"
          "  --token TOKEN        call token for every call (call_auth = token; tingshuo token)\n"
          "  --insecure           accept any TLS certificate for wss://\n"
          "  --codec-floor        only time one call's Opus work (decode at 16 kHz, encode\n"
          "                       at 48 kHz, 50 frames a second each) and exit; every run\n"
          "                       prints it beside the server's CPU per call\n");
}

static int parse_opts(int argc, char **argv, struct bench_opts *o, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->calls = 10;
  o->duration_s = 30;
  o->max_calls = 1000;
  o->barge_every = 4;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int takes = 1, rc = 0;
    if (strcmp(a, "--calls") == 0) rc = args_int(a, v, 1, 5000, &o->calls, err, errlen);
    else if (strcmp(a, "--duration") == 0) rc = args_number(a, v, 1, 86400, &o->duration_s, err, errlen);
    else if (strcmp(a, "--json") == 0) o->json = v;
    else if (strcmp(a, "--wav") == 0) o->wav = v;
    else if (strcmp(a, "--token") == 0) o->token = v;
    else if (strcmp(a, "--echo") == 0) rc = args_echo(v, &o->gain, &o->delay_ms, err, errlen);
    else if (strcmp(a, "--max-calls") == 0) rc = args_int(a, v, 1, 5000, &o->max_calls, err, errlen);
    else if (strcmp(a, "--barge-every") == 0) rc = args_int(a, v, 0, 1000, &o->barge_every, err, errlen);
    else if (strcmp(a, "--echo-later") == 0)
      rc = args_number(a, v, 0.001, 4, &o->echo_later, err, errlen);
    else if (strcmp(a, "--server-pid") == 0) rc = args_int(a, v, 1, 1L << 30, &o->pid, err, errlen);
    else if (strcmp(a, "--find-max") == 0) o->find_max = 1, takes = 0;
    else if (strcmp(a, "--insecure") == 0) o->insecure = 1, takes = 0;
    else if (strcmp(a, "--codec-floor") == 0) o->codec_floor_only = 1, takes = 0;
    else if (a[0] == '-') return snprintf(err, errlen, "unknown flag %s", a), -EINVAL;
    else if (!o->url_text) o->url_text = a, takes = 0;
    else return snprintf(err, errlen, "unexpected argument \"%s\"", a), -EINVAL;
    if (rc) return rc;
    if (takes && !v) return snprintf(err, errlen, "%s needs a value", a), -EINVAL;
    i += takes;
  }
  if (o->codec_floor_only) return 0;
  if (!o->url_text) return snprintf(err, errlen, "no URL given"), -EINVAL;
  if (o->echo_later > 0 && o->gain <= 0)
    return snprintf(err, errlen, "--echo-later needs --echo"), -EINVAL;
  return ws_url_parse(o->url_text, &o->url, err, errlen);
}

/* The default utterance, spoken by flite; w->pcm is malloc'd. */
static int flite_utterance(struct wav *w) {
  int rc = tts_flite_voices_acquire();
  if (rc) return rc;
  cst_voice *voice = tts_flite_voice(DEFAULT_VOICE);
  size_t n = 0;
  *w = (struct wav){.channels = 1};
  rc = voice ? tts_flite_render(voice, DEFAULT_UTTERANCE, &w->pcm, &n, &w->rate) : -ENOENT;
  tts_flite_voices_release();
  w->frames = n;
  return rc;
}

/* Loads the utterance; with `sp` NULL only the codec floor is measured. */
static int load_speech(const struct bench_opts *o, struct loadgen_speech **sp,
                       struct codec_floor *floor, char *err, size_t errlen) {
  const char *name = o->wav ? o->wav : "flite " DEFAULT_VOICE " voice";
  struct wav w;
  int rc = o->wav ? wav_read(o->wav, &w, err, errlen) : flite_utterance(&w);
  if (rc && !o->wav) snprintf(err, errlen, "%s: cannot synthesise the utterance", name);
  if (rc) return rc;
  int16_t *pcm = NULL;
  size_t n = 0;
  rc = wav_mono48k(&w, &pcm, &n);
  wav_free(&w);
  if (rc == 0 && sp) rc = loadgen_speech_new(sp, pcm, n);
  if (rc == -EINVAL) snprintf(err, errlen, "%s: no speech in it (nothing above -45 dBFS)", name);
  else if (rc) snprintf(err, errlen, "%s: cannot prepare it", name);
  if (rc == 0 && codec_floor_measure(pcm, n, VOICE_IN_RATE, FLOOR_CPU_S, floor) != 0)
    floor->percent_of_core = -1; /* too short to time: the report says so */
  free(pcm);
  return rc;
}

/* --- judging and reporting ------------------------------------------------------------ */

static double ratio(uint64_t part, uint64_t whole) { return whole ? (double)part / (double)whole : 0; }

static uint64_t lost_of(const struct loadgen_result *r) {
  return r->expected > r->received ? r->expected - r->received : 0;
}

static int passed(const struct loadgen_result *r) {
  double j99 = stats_hist_pct(r->jitter, 99);
  return r->failed == 0 && r->connected == r->calls && r->connected_at_measure == r->calls &&
         r->expected > 0 &&
         ratio(lost_of(r), r->expected) < MAX_LOSS_RATIO &&
         ratio(r->late, r->expected) < MAX_LOSS_RATIO && !(j99 >= MAX_JITTER_P99_MS);
}

static void print_dist(const char *name, struct stats_samples *s, const char *none) {
  if (!s->n) {
    printf("  %-22s %s\n", name, none);
    return;
  }
  printf("  %-22s p50 %7.1f   p95 %7.1f   p99 %7.1f ms   (n=%zu)\n", name, stats_samples_pct(s, 50),
         stats_samples_pct(s, 95), stats_samples_pct(s, 99), s->n);
}

static void print_floor(const struct codec_floor *f) {
  if (f->percent_of_core < 0) {
    printf("  %-22s n/a (the utterance is too short to time)\n", "codec floor");
    return;
  }
  printf("  %-22s %.3f%% of a core per call: Opus decode at %d kHz %.1f us + encode at 48 kHz "
         "%.1f us, 50 frames a second each\n",
         "codec floor", f->percent_of_core, f->decode_rate / 1000, f->decode_us, f->encode_us);
}

/* Per-call CPU against the floor: what share of it the floor is, and how many floors it is. */
static void print_floor_share(const struct codec_floor *f, double per_call) {
  if (f->percent_of_core <= 0 || per_call <= 0) return;
  printf("  %-22s %.0f%% of the server's CPU per call (which is %.2fx the floor)\n", "  floor share",
         100 * f->percent_of_core / per_call, per_call / f->percent_of_core);
}

static void print_table(const struct bench_opts *o, struct loadgen_result *r,
                        const struct codec_floor *floor) {
  printf("tingshuo bench: %d calls x %.0f s against %s\n", r->calls, o->duration_s, o->url_text);
  printf("  %-22s %d connected, %d failed", "calls", r->connected, r->failed);
  if (r->connected_at_measure < r->connected)
    printf(" (only %d in media when measuring began: not %d concurrent calls)", r->connected_at_measure,
           r->calls);
  printf("\n");
  for (int i = 0; i < r->nfailures; i++) printf("  %-22s %s\n", "  failure", r->failures[i]);
  print_dist("call setup", &r->setup_ms, "-");
  printf("  %-22s %llu (%llu unanswered)\n", "turns", (unsigned long long)r->turns,
         (unsigned long long)r->unanswered);
  print_dist("voice-to-voice (raw)", &r->v2v_raw_ms, "no reply heard");
  print_dist("  minus endpoint", &r->v2v_adjusted_ms, "n/a (no latency events from the server)");
  print_dist("  server-reported", &r->v2v_server_ms, "n/a");
  printf("  %-22s %llu attempted, %llu stopped\n", "barge-in", (unsigned long long)r->barge_attempts,
         (unsigned long long)r->barge_stopped);
  print_dist("  stop time", &r->barge_stop_ms, "n/a (the reply never stopped)");
  uint64_t lost = lost_of(r);
  printf("  %-22s %llu of %llu expected: lost %llu (%.3f%%), late %llu (%.3f%%)\n",
         "frames received", (unsigned long long)r->received, (unsigned long long)r->expected,
         (unsigned long long)lost, 100 * ratio(lost, r->expected), (unsigned long long)r->late,
         100 * ratio(r->late, r->expected));
  printf("  %-22s p50 %.1f   p99 %.1f   max %.1f ms\n", "outbound jitter",
         stats_hist_pct(r->jitter, 50), stats_hist_pct(r->jitter, 99), stats_hist_max(r->jitter));
  printf("  %-22s %llu%s\n", "false interruptions", (unsigned long long)r->false_interruptions,
         o->gain > 0 ? "" : " (no --echo)");
  if (r->server_cpu_percent >= 0) {
    long grown = r->server_rss_peak_kb - r->server_rss_base_kb;
    printf("  %-22s CPU %.1f%% (%.3f%% of a core per call)\n", "server", r->server_cpu_percent,
           r->server_cpu_percent / r->calls);
    printf("  %-22s %.1f MB before the first call, %.1f MB peak: %.0f KB per call "
           "((peak - before) / %d)\n",
           "server memory", r->server_rss_base_kb / 1024.0, r->server_rss_peak_kb / 1024.0,
           (double)grown / r->calls, r->calls);
  } else {
    printf("  %-22s n/a (give --server-pid PID for CPU and memory)\n", "server");
  }
  if (r->client_cpu_percent >= 0) printf("  %-22s CPU %.1f%%\n", "client (this process)", r->client_cpu_percent);
  print_floor(floor);
  if (r->server_cpu_percent >= 0) print_floor_share(floor, r->server_cpu_percent / r->calls);
  printf("  %-22s %s\n", "bounds", passed(r) ? "PASS" : "FAIL");
  fflush(stdout);
}

static json_t *jnum(double v) { return isfinite(v) ? json_real(round(v * 100) / 100) : json_null(); }

static json_t *jdist(struct stats_samples *s) {
  if (!s->n) return json_null();
  return json_pack("{s:o,s:o,s:o,s:o,s:I}", "p50", jnum(stats_samples_pct(s, 50)), "p95",
                   jnum(stats_samples_pct(s, 95)), "p99", jnum(stats_samples_pct(s, 99)), "mean",
                   jnum(stats_samples_mean(s)), "n", (json_int_t)s->n);
}

static json_t *json_result(const struct bench_opts *o, struct loadgen_result *r) {
  json_t *fails = json_array();
  for (int i = 0; i < r->nfailures; i++) json_array_append_new(fails, json_string(r->failures[i]));
  uint64_t lost = lost_of(r);
  json_t *server = json_null();
  if (r->server_cpu_percent >= 0)
    server = json_pack("{s:I,s:o,s:o,s:I,s:I,s:o}", "pid", (json_int_t)o->pid, "cpu_percent",
                       jnum(r->server_cpu_percent), "cpu_percent_per_call",
                       jnum(r->server_cpu_percent / r->calls), "rss_idle_kb",
                       (json_int_t)r->server_rss_base_kb, "rss_peak_kb",
                       (json_int_t)r->server_rss_peak_kb, "rss_per_call_kb",
                       jnum((double)(r->server_rss_peak_kb - r->server_rss_base_kb) / r->calls));
  return json_pack(
      "{s:i,s:o,s:i,s:i,s:i,s:o,s:o,s:I,s:I,s:{s:o,s:o,s:o},s:{s:I,s:I,s:o},"
      "s:{s:I,s:I,s:I,s:I,s:o,s:o},s:{s:o,s:o,s:o},s:I,s:o,s:{s:o},s:o,s:b}",
      "calls", r->calls, "duration_s", jnum(o->duration_s), "connected", r->connected,
      "connected_at_measure", r->connected_at_measure,
      "failed_calls", r->failed, "failures", fails, "setup_ms", jdist(&r->setup_ms), "turns",
      (json_int_t)r->turns, "unanswered_turns", (json_int_t)r->unanswered, "voice_to_voice_ms",
      "raw", jdist(&r->v2v_raw_ms), "adjusted", jdist(&r->v2v_adjusted_ms), "server_reported",
      jdist(&r->v2v_server_ms), "barge_in", "attempts", (json_int_t)r->barge_attempts, "stopped",
      (json_int_t)r->barge_stopped, "stop_ms", jdist(&r->barge_stop_ms), "frames", "expected",
      (json_int_t)r->expected, "received", (json_int_t)r->received, "lost", (json_int_t)lost,
      "late", (json_int_t)r->late, "lost_ratio", json_real(ratio(lost, r->expected)),
      "late_ratio", json_real(ratio(r->late, r->expected)), "outbound_jitter_ms", "p50",
      jnum(stats_hist_pct(r->jitter, 50)), "p99", jnum(stats_hist_pct(r->jitter, 99)), "max",
      jnum(stats_hist_max(r->jitter)), "false_interruptions", (json_int_t)r->false_interruptions,
      "server", server, "client", "cpu_percent", jnum(r->client_cpu_percent), "measured_s",
      jnum(r->measured_s), "pass", passed(r));
}

static json_t *json_floor(const struct codec_floor *f) {
  if (f->percent_of_core < 0) return json_null();
  return json_pack("{s:i,s:o,s:o,s:o,s:I}", "decode_rate", f->decode_rate, "decode_us",
                   jnum(f->decode_us), "encode_us", jnum(f->encode_us), "percent_of_core",
                   json_real(round(f->percent_of_core * 10000) / 10000), "frames_timed",
                   (json_int_t)f->frames);
}

static json_t *json_machine(void) {
  char model[256] = "unknown", line[512];
  FILE *f = fopen("/proc/cpuinfo", "r");
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) == 0) {
      const char *v = strchr(line, ':');
      if (v) snprintf(model, sizeof model, "%s", v + 2);
      model[strcspn(model, "\n")] = '\0';
      break;
    }
  }
  if (f) fclose(f);
  return json_pack("{s:s,s:i}", "cpu_model", model, "cpus", (int)sysconf(_SC_NPROCESSORS_ONLN));
}

/* --- running ---------------------------------------------------------------------------- */

static int run_round(const struct bench_opts *o, const struct loadgen_speech *sp, int calls,
                     unsigned seed, struct loadgen_result *r, char *err, size_t errlen) {
  struct loadgen_params p = {.url = &o->url, .calls = calls, .duration_s = o->duration_s,
                             .speech = sp, .echo_gain = o->gain, .echo_delay_ms = o->delay_ms,
                             .barge_every = (int)o->barge_every, .insecure = o->insecure,
                             .token = o->token,
                             .server_pid = (pid_t)o->pid, .seed = seed};
  p.echo_gain_later = o->echo_later;
  return loadgen_run(&p, r, err, errlen);
}

/* The next N to try: ramp, then bisect between the best pass and the first failure. */
static int next_calls(int tried, int ok, int *best, int *worst) {
  static const int ramp[] = {10, 20, 40, 80, 120, 160, 200};
  if (ok && tried > *best) *best = tried;
  if (!ok && (*worst == 0 || tried < *worst)) *worst = tried;
  if (*worst == 0) {
    for (size_t i = 0; i < sizeof ramp / sizeof ramp[0]; i++)
      if (ramp[i] > tried) return ramp[i];
    return tried + 80;
  }
  int gap = *worst - *best, step = *best >= 100 ? 10 : 5;
  if (gap <= step) return 0;
  return *best + gap / 2;
}

static int find_max(const struct bench_opts *o, const struct loadgen_speech *sp, json_t *rounds,
                    int *best_out, char *err, size_t errlen) {
  int n = 10, best = 0, worst = 0;
  for (int round = 0; n > 0 && n <= o->max_calls && round < MAX_ROUNDS; round++) {
    struct loadgen_result r;
    int rc = run_round(o, sp, n, (unsigned)round + 1, &r, err, errlen);
    if (rc) return rc;
    int ok = passed(&r);
    char cpu[48] = "", late[64] = "";
    if (r.server_cpu_percent >= 0) snprintf(cpu, sizeof cpu, ", server CPU %.0f%%", r.server_cpu_percent);
    if (r.connected_at_measure < r.calls)
      snprintf(late, sizeof late, ", %d connected too late", r.calls - r.connected_at_measure);
    printf("find-max: %4d calls: %s  (failed %d%s, lost %.3f%%, late %.3f%%, jitter p99 %.1f ms, "
           "voice-to-voice p50 %.0f ms%s)\n",
           n, ok ? "PASS" : "FAIL", r.failed, late, 100 * ratio(lost_of(&r), r.expected),
           100 * ratio(r.late, r.expected), stats_hist_pct(r.jitter, 99),
           stats_samples_pct(&r.v2v_raw_ms, 50), cpu);
    fflush(stdout);
    json_array_append_new(rounds, json_result(o, &r));
    loadgen_result_free(&r);
    n = next_calls(n, ok, &best, &worst);
    sleep(2); /* let the server finish tearing the calls down */
  }
  *best_out = best;
  return 0;
}

static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static int write_json(const char *path, json_t *doc) {
  int rc = json_dump_file(doc, path, JSON_INDENT(2));
  if (rc) fprintf(stderr, "tingshuo bench: cannot write %s\n", path);
  return rc ? 1 : 0;
}

int bench_cmd_main(int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      bench_cmd_usage(stdout);
      return 0;
    }
  struct bench_opts o;
  char err[512] = "";
  if (parse_opts(argc, argv, &o, err, sizeof err)) {
    fprintf(stderr, "tingshuo bench: %s\n", err);
    bench_cmd_usage(stderr);
    return 2;
  }
  raise_fd_limit();
  struct loadgen_speech *sp = NULL;
  struct codec_floor floor = {.percent_of_core = -1};
  if (load_speech(&o, o.codec_floor_only ? NULL : &sp, &floor, err, sizeof err)) {
    fprintf(stderr, "tingshuo bench: %s\n", err);
    return 1;
  }
  if (o.codec_floor_only) {
    print_floor(&floor);
    return floor.percent_of_core < 0;
  }
  json_t *doc = json_pack("{s:s,s:o,s:o,s:o}", "url", o.url_text, "machine", json_machine(),
                          "codec_floor", json_floor(&floor),
                          "echo", o.gain > 0 ? json_pack("{s:f,s:i,s:f}", "gain", o.gain,
                                                         "delay_ms", o.delay_ms, "gain_later",
                                                         o.echo_later)
                                             : json_null());
  int status = 0, rc;
  if (o.find_max) {
    json_t *rounds = json_array();
    int best = 0;
    rc = find_max(&o, sp, rounds, &best, err, sizeof err);
    printf("find-max: largest number of calls within the bounds: %d\n", best);
    print_floor(&floor);
    json_object_set_new(doc, "find_max", json_pack("{s:i,s:o,s:f,s:f,s:o}", "max_calls", best,
                                                   "duration_s", jnum(o.duration_s), "max_loss_ratio",
                                                   MAX_LOSS_RATIO, "max_jitter_p99_ms",
                                                   MAX_JITTER_P99_MS, "rounds", rounds));
    status = rc || best == 0;
  } else {
    struct loadgen_result r;
    rc = run_round(&o, sp, (int)o.calls, 1, &r, err, sizeof err);
    if (rc == 0) {
      print_table(&o, &r, &floor);
      json_t *res = json_result(&o, &r);
      json_object_update(doc, res);
      json_decref(res);
      status = r.failed > 0;
      loadgen_result_free(&r);
    }
  }
  if (rc) {
    fprintf(stderr, "tingshuo bench: %s\n", err);
    status = 1;
  }
  if (o.json && write_json(o.json, doc)) status = 1;
  json_decref(doc);
  loadgen_speech_free(sp);
  return status;
}
