/* recorder: a call's ticks become a private Ogg Opus file on the recorder thread, in time, with
 * long gaps silent; dropped buffers keep the timeline; bad ids, bad directories, no clobbering. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <opus/opus.h>

#include "media/recorder.h"
#include "oggread.h"

struct pkt {
  uint8_t data[400];
  int len;
};

static struct pkt *tone_packets(int count, double hz) {
  int err;
  OpusEncoder *e = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
  struct pkt *p = calloc((size_t)count, sizeof *p);
  int16_t pcm[960];
  for (int i = 0; i < count; i++) {
    for (int k = 0; k < 960; k++) pcm[k] = (int16_t)(8000 * sin(2 * M_PI * hz * (i * 960 + k) / 48000));
    p[i].len = opus_encode(e, pcm, 960, p[i].data, sizeof p[i].data);
    assert_true(p[i].len > 0);
  }
  opus_encoder_destroy(e);
  return p;
}

static char *temp_dir(void) {
  char *d = strdup("/tmp/test_recorder_XXXXXX");
  assert_non_null(mkdtemp(d));
  return d;
}

static void remove_dir(char *d) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
  assert_int_equal(system(cmd), 0);
  free(d);
}

static void recording_path(const char *dir, const char *id, char *out, size_t cap) {
  snprintf(out, cap, "%s/recordings/%s.ogg", dir, id);
}

/* Caller speaks from tick 20 on; the AI speaks for ticks 0-69 and then sends nothing. */
static void a_call_becomes_a_private_file(void **state) {
  enum { T = 130, CALLER_FROM = 20, AGENT_UNTIL = 70 };
  char *dir = temp_dir(), err[256], path[512];
  struct recorder *r;
  assert_int_equal(recorder_start(&r, dir, 0, err, sizeof err), 0);
  char rdir[512];
  snprintf(rdir, sizeof rdir, "%s/recordings", dir);
  struct stat st;
  assert_int_equal(stat(rdir, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);

  struct pkt *caller = tone_packets(T, 440), *agent = tone_packets(AGENT_UNTIL, 1000);
  struct recorder_call *rc = recorder_call_new(r, "abc123", 1764428400000ull);
  assert_non_null(rc);
  for (int i = 0; i < T; i++) {
    const struct pkt *c = i >= CALLER_FROM ? &caller[i - CALLER_FROM] : NULL;
    const struct pkt *a = i < AGENT_UNTIL ? &agent[i] : NULL;
    recorder_call_tick(rc, c ? c->data : NULL, c ? (size_t)c->len : 0, a ? a->data : NULL,
                       a ? (size_t)a->len : 0);
  }
  recorder_call_end(rc);
  recorder_stop(r);

  recording_path(dir, "abc123", path, sizeof path);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  struct oggread o;
  assert_int_equal(oggread_file(path, &o, -1), 0);
  assert_int_equal(o.frames, (size_t)T * 960);
  assert_int_equal(o.decode_errors, 0);
  assert_true(o.eos_last);
  assert_int_equal(o.granule[o.pages - 1], T * 960);
  assert_non_null(memmem(o.tags, (size_t)o.tags_len, "TITLE=call abc123", 17));
  assert_non_null(memmem(o.tags, (size_t)o.tags_len, "DATE=2025-11-29T15:00:00Z", 25));

  size_t first = T;
  for (size_t f = 0; f < T && first == T; f++)
    if (oggread_rms(&o, 0, f) > 100) first = f;
  assert_int_equal(first, CALLER_FROM);
  for (size_t f = CALLER_FROM + 2; f < T; f++) assert_true(oggread_tone(&o, 0, f, 440) > 3000);
  for (size_t f = 2; f < AGENT_UNTIL; f++) assert_true(oggread_tone(&o, 1, f, 1000) > 3000);
  /* 200 ms of concealment, then coded silence: exact zeros. */
  assert_true(oggread_rms(&o, 1, AGENT_UNTIL) > 1000);
  for (size_t f = AGENT_UNTIL + 13; f < T; f++)
    for (size_t k = 0; k < 960; k++) assert_int_equal(o.pcm[2 * (f * 960 + k) + 1], 0);
  oggread_free(&o);
  free(caller);
  free(agent);
  remove_dir(dir);
}

/* With no room in the queue every second of audio is dropped, never waited for; the file
 * still lasts as long as the call, and the drops are counted. */
static void dropped_buffers_keep_the_timeline(void **state) {
  enum { T = 170 };
  char *dir = temp_dir(), err[256], path[512];
  struct recorder *r;
  assert_int_equal(recorder_start(&r, dir, 1, err, sizeof err), 0);
  struct pkt *p = tone_packets(T, 440);
  struct recorder_call *rc = recorder_call_new(r, "dropped", 0);
  for (int i = 0; i < T; i++) recorder_call_tick(rc, p[i].data, (size_t)p[i].len, p[i].data, (size_t)p[i].len);
  recorder_call_end(rc);
  struct recorder_stats st;
  recorder_get_stats(r, &st);
  assert_int_equal(st.dropped, 4); /* 50 + 50 + 50 + 20 ticks */
  recorder_stop(r);
  recording_path(dir, "dropped", path, sizeof path);
  struct oggread o;
  assert_int_equal(oggread_file(path, &o, -1), 0);
  assert_int_equal(o.frames, (size_t)T * 960);
  assert_true(o.eos_last);
  for (size_t k = 0; k < (size_t)T * 960 * 2; k++) assert_int_equal(o.pcm[k], 0);
  oggread_free(&o);
  free(p);
  remove_dir(dir);
}

/* 40 ms packets cannot share a packet with the other side's 20 ms ones: that side is left
 * out (silent here, as its decoder never had a packet), the other side plays, the file is valid. */
static void odd_packets_are_left_out(void **state) {
  enum { T = 40 };
  char *dir = temp_dir(), err[256], path[512];
  struct recorder *r;
  assert_int_equal(recorder_start(&r, dir, 0, err, sizeof err), 0);
  int e;
  OpusEncoder *enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &e);
  int16_t pcm[1920];
  for (int k = 0; k < 1920; k++) pcm[k] = (int16_t)(8000 * sin(2 * M_PI * 440 * k / 48000));
  uint8_t long_pkt[400];
  int ll = opus_encode(enc, pcm, 1920, long_pkt, sizeof long_pkt);
  opus_encoder_destroy(enc);
  assert_true(ll > 0);
  struct pkt *agent = tone_packets(T, 1000);
  struct recorder_call *rc = recorder_call_new(r, "odd", 0);
  for (int i = 0; i < T; i++)
    recorder_call_tick(rc, i % 2 ? NULL : long_pkt, i % 2 ? 0 : (size_t)ll, agent[i].data,
                       (size_t)agent[i].len);
  recorder_call_end(rc);
  recorder_stop(r);
  recording_path(dir, "odd", path, sizeof path);
  struct oggread o;
  assert_int_equal(oggread_file(path, &o, -1), 0);
  assert_int_equal(o.decode_errors, 0);
  assert_int_equal(o.frames, (size_t)T * 960);
  for (size_t f = 0; f < T; f++) assert_true(oggread_rms(&o, 0, f) == 0);
  for (size_t f = 2; f < T; f++) assert_true(oggread_tone(&o, 1, f, 1000) > 3000);
  oggread_free(&o);
  free(agent);
  remove_dir(dir);
}

static void ids_must_be_file_names(void **state) {
  char name[64];
  assert_int_equal(recorder_file_name("3f9a0c1d2e4b5a69", name, sizeof name), 0);
  assert_string_equal(name, "3f9a0c1d2e4b5a69.ogg");
  assert_int_equal(recorder_file_name("A-b_9", name, sizeof name), 0);
  const char *bad[] = {"", "../etc", "a/b", "a.b", "a b", "x\n", "0123456789012345678901234567890123456"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(recorder_file_name(bad[i], name, sizeof name), -EINVAL);
    assert_null(recorder_call_new(NULL, bad[i], 0));
  }
  assert_int_equal(recorder_file_name("abc", name, 7), -ENOSPC);
}

static void bad_directories_stop_the_start(void **state) {
  char *dir = temp_dir(), err[256], sub[512];
  struct recorder *r = NULL;
  snprintf(sub, sizeof sub, "%s/recordings", dir);
  int fd = open(sub, O_WRONLY | O_CREAT, 0600); /* a file where the directory should be */
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(recorder_start(&r, dir, 0, err, sizeof err), -ENOTDIR);
  assert_non_null(strstr(err, "recordings is not a directory"));
  snprintf(sub, sizeof sub, "%s/missing/deeper", dir);
  assert_int_equal(recorder_start(&r, sub, 0, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, "cannot create"));
  assert_null(r);
  remove_dir(dir);
}

/* A file that exists is never overwritten: that recording is given up and counted. */
static void existing_files_are_kept(void **state) {
  char *dir = temp_dir(), err[256], path[512];
  struct recorder *r;
  assert_int_equal(recorder_start(&r, dir, 0, err, sizeof err), 0);
  recording_path(dir, "taken", path, sizeof path);
  FILE *f = fopen(path, "w");
  fputs("keep me", f);
  fclose(f);
  struct pkt *p = tone_packets(3, 440);
  struct recorder_call *rc = recorder_call_new(r, "taken", 0);
  for (int i = 0; i < 3; i++) recorder_call_tick(rc, p[i].data, (size_t)p[i].len, NULL, 0);
  recorder_call_end(rc);
  recorder_call_end(NULL);
  recorder_stop(r);
  char buf[32] = {0};
  f = fopen(path, "r");
  assert_non_null(fgets(buf, sizeof buf, f));
  fclose(f);
  assert_string_equal(buf, "keep me");
  free(p);
  remove_dir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_call_becomes_a_private_file),
      cmocka_unit_test(dropped_buffers_keep_the_timeline),
      cmocka_unit_test(odd_packets_are_left_out),
      cmocka_unit_test(ids_must_be_file_names),
      cmocka_unit_test(bad_directories_stop_the_start),
      cmocka_unit_test(existing_files_are_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
