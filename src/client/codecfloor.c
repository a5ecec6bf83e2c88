/*
 * The codec floor, timed with the thread's own CPU clock
 * (CLOCK_THREAD_CPUTIME_ID): on a machine others share, wall time would
 * count their work too, CPU time counts only ours. The codecs are the
 * project's own wrappers with the settings a call uses, so the floor moves
 * when those settings do.
 *
 * The frames are speech all the way; a real call is silent part of the
 * time, and silence costs an encoder and a decoder less, so the floor is a
 * little above what a call's codecs really cost: a conservative floor.
 */
#include "client/codecfloor.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "audio/opus_codec.h"

#define MAX_PACKET 1500
#define MIN_FRAMES 10

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct packets {
  uint8_t (*data)[MAX_PACKET];
  int *len;
  size_t n;
};

static void packets_free(struct packets *p) {
  free(p->data);
  free(p->len);
}

/* The caller's frames, coded for a receiver at max_rate. */
static int encode_caller(const int16_t *pcm, size_t frames, int max_rate, struct packets *p) {
  p->data = malloc(frames * sizeof *p->data);
  p->len = malloc(frames * sizeof *p->len);
  p->n = frames;
  struct opusc_enc *enc = p->data && p->len ? opusc_enc_new(OPUSC_MIC, 0) : NULL;
  if (!enc) return -ENOMEM;
  opusc_enc_set_max_rate(enc, max_rate);
  int rc = 0;
  for (size_t i = 0; i < frames && rc == 0; i++) {
    p->len[i] = opusc_encode(enc, pcm + i * OPUSC_FRAME, p->data[i], MAX_PACKET);
    if (p->len[i] <= 0) rc = -EIO;
  }
  opusc_enc_free(enc);
  return rc;
}

static int time_decode(const struct packets *p, int rate, double min_cpu_s, double *us, size_t *count) {
  struct opusc_dec *dec = opusc_dec_new_rate(rate);
  if (!dec) return -ENOMEM;
  int16_t pcm[OPUSC_MAX_FRAME];
  size_t done = 0;
  double t0 = cpu_now(), spent = 0;
  while (spent < min_cpu_s) {
    for (size_t i = 0; i < p->n; i++, done++)
      if (opusc_decode(dec, p->data[i], (size_t)p->len[i], pcm, OPUSC_MAX_FRAME) < 0) {
        opusc_dec_free(dec);
        return -EIO;
      }
    spent = cpu_now() - t0;
  }
  opusc_dec_free(dec);
  *us = spent * 1e6 / (double)done;
  *count = done;
  return 0;
}

static int time_encode(const int16_t *pcm, size_t frames, double min_cpu_s, double *us) {
  struct opusc_enc *enc = opusc_enc_new(OPUSC_AGENT, 0);
  if (!enc) return -ENOMEM;
  uint8_t pkt[MAX_PACKET];
  size_t done = 0;
  double t0 = cpu_now(), spent = 0;
  while (spent < min_cpu_s) {
    for (size_t i = 0; i < frames; i++, done++)
      if (opusc_encode(enc, pcm + i * OPUSC_FRAME, pkt, sizeof pkt) <= 0) {
        opusc_enc_free(enc);
        return -EIO;
      }
    spent = cpu_now() - t0;
  }
  opusc_enc_free(enc);
  *us = spent * 1e6 / (double)done;
  return 0;
}

int codec_floor_measure(const int16_t *pcm, size_t n, int decode_rate, double min_cpu_s,
                        struct codec_floor *out) {
  size_t frames = n / OPUSC_FRAME;
  if (frames < MIN_FRAMES) return -EINVAL;
  if (decode_rate != 8000 && decode_rate != 12000 && decode_rate != 16000 &&
      decode_rate != 24000 && decode_rate != 48000)
    return -EINVAL;
  struct packets p = {0};
  struct codec_floor f = {.decode_rate = decode_rate};
  int rc = encode_caller(pcm, frames, decode_rate, &p);
  if (rc == 0) rc = time_decode(&p, decode_rate, min_cpu_s, &f.decode_us, &f.frames);
  if (rc == 0) rc = time_encode(pcm, frames, min_cpu_s, &f.encode_us);
  packets_free(&p);
  if (rc) return rc;
  f.percent_of_core = 100.0 * 50.0 * (f.decode_us + f.encode_us) / 1e6;
  *out = f;
  return 0;
}
