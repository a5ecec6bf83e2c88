/*
 * Reading back a two-stream Ogg Opus recording for the tests: pages and
 * their granule positions, the two headers, and every audio packet decoded
 * with libopus' multistream decoder (as a player does), into interleaved
 * stereo. Shared by test_oggopus.c and test_recorder.c.
 */
#ifndef TS_TEST_OGGREAD_H
#define TS_TEST_OGGREAD_H

#include <math.h>
#include <ogg/ogg.h>
#include <opus/opus_multistream.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OGGREAD_MAX_PAGES 512

struct oggread {
  uint8_t head[64];
  long head_len;
  char tags[512];       /* the OpusTags packet, NUL-terminated at its end */
  long tags_len;
  int pages;
  int64_t granule[OGGREAD_MAX_PAGES]; /* per page */
  int done[OGGREAD_MAX_PAGES];        /* audio packets completed up to and including the page */
  long end[OGGREAD_MAX_PAGES];        /* file offset just past the page */
  int bos_first, eos_last, eos_pages;
  int packets;                        /* audio packets */
  int decode_errors;
  int16_t *pcm;                       /* interleaved L R */
  size_t frames;                      /* samples per channel */
};

static inline void oggread_free(struct oggread *r) { free(r->pcm); }

/* Parses and decodes `len` bytes of a file; returns 0, or -1 when the
 * headers are missing. Bytes after the last complete page are ignored, as
 * a player ignores them. */
static inline int oggread_bytes(const uint8_t *data, size_t len, struct oggread *r) {
  memset(r, 0, sizeof *r);
  ogg_sync_state oy;
  ogg_stream_state os;
  ogg_page pg;
  ogg_packet op;
  int have_stream = 0, npk = 0;
  long offset = 0;
  OpusMSDecoder *dec = NULL;
  ogg_sync_init(&oy);
  char *buf = ogg_sync_buffer(&oy, (long)len);
  memcpy(buf, data, len);
  ogg_sync_wrote(&oy, (long)len);
  size_t cap = 48000 * 2;
  r->pcm = malloc(cap * 2 * sizeof(int16_t));
  while (ogg_sync_pageout(&oy, &pg) == 1) {
    if (!have_stream) {
      ogg_stream_init(&os, ogg_page_serialno(&pg));
      have_stream = 1;
      r->bos_first = !!ogg_page_bos(&pg);
    }
    ogg_stream_pagein(&os, &pg);
    r->eos_last = !!ogg_page_eos(&pg);
    r->eos_pages += !!ogg_page_eos(&pg);
    offset += pg.header_len + pg.body_len;
    while (ogg_stream_packetout(&os, &op) == 1) {
      if (npk == 0) {
        r->head_len = op.bytes;
        memcpy(r->head, op.packet, op.bytes < 64 ? (size_t)op.bytes : 64);
        unsigned char map[2] = {0, 1};
        int err;
        dec = opus_multistream_decoder_create(48000, 2, 2, 0, map, &err);
      } else if (npk == 1) {
        r->tags_len = op.bytes;
        memcpy(r->tags, op.packet, op.bytes < 511 ? (size_t)op.bytes : 511);
      } else {
        if (r->frames + 5760 > cap) {
          cap *= 2;
          r->pcm = realloc(r->pcm, cap * 2 * sizeof(int16_t));
        }
        int n = opus_multistream_decode(dec, op.packet, (opus_int32)op.bytes,
                                        r->pcm + 2 * r->frames, 5760, 0);
        if (n < 0) r->decode_errors++;
        else r->frames += (size_t)n;
        r->packets++;
      }
      npk++;
    }
    if (r->pages < OGGREAD_MAX_PAGES) {
      r->granule[r->pages] = ogg_page_granulepos(&pg);
      r->done[r->pages] = r->packets;
      r->end[r->pages] = offset;
    }
    r->pages++;
  }
  if (have_stream) ogg_stream_clear(&os);
  ogg_sync_clear(&oy);
  if (dec) opus_multistream_decoder_destroy(dec);
  return npk >= 2 ? 0 : -1;
}

static inline int oggread_file(const char *path, struct oggread *r, long truncate_at) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (truncate_at >= 0 && truncate_at < n) n = truncate_at;
  uint8_t *b = malloc((size_t)n + 1);
  size_t got = fread(b, 1, (size_t)n, f);
  fclose(f);
  int rc = got == (size_t)n ? oggread_bytes(b, (size_t)n, r) : -1;
  free(b);
  return rc;
}

/* Amplitude of the `hz` component of channel `ch` over 20 ms frame `frame`. */
static inline double oggread_tone(const struct oggread *r, int ch, size_t frame, double hz) {
  double re = 0, im = 0;
  for (size_t i = 0; i < 960; i++) {
    double x = r->pcm[2 * (frame * 960 + i) + (size_t)ch], w = 2 * M_PI * hz * (double)i / 48000;
    re += x * cos(w);
    im += x * sin(w);
  }
  return 2 * sqrt(re * re + im * im) / 960;
}

/* RMS of channel `ch` over 20 ms frame `frame`. */
static inline double oggread_rms(const struct oggread *r, int ch, size_t frame) {
  double s = 0;
  for (size_t i = 0; i < 960; i++) {
    double x = r->pcm[2 * (frame * 960 + i) + (size_t)ch];
    s += x * x;
  }
  return sqrt(s / 960);
}

#endif
