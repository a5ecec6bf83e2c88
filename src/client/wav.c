/*
 * WAV files.
 *
 * The reader walks the RIFF chunks, takes the first "fmt " and "data" and
 * skips everything else (LIST, fact, cue...), so files from any tool load.
 * Every length is checked against the buffer before it is used: a truncated
 * or hostile file is an error message, never a read past the end. A data
 * chunk that claims more than the file holds is cut to what is there, as
 * players do with files a recorder never finished.
 *
 * Resampling goes through speexdsp in one pass over the whole signal.
 */
#include "client/wav.h"

#include <errno.h>
#include <speex/speex_resampler.h>
#include <stdlib.h>
#include <string.h>

#define FMT_PCM 1
#define FMT_FLOAT 3
#define FMT_EXTENSIBLE 0xFFFE
#define MAX_FILE (512u * 1024 * 1024)

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int bad(char *err, size_t errlen, const char *why) {
  snprintf(err, errlen, "%s", why);
  return -EBADMSG;
}

struct fmt {
  int format, channels, bits;
  uint32_t rate;
};

static int parse_fmt(const uint8_t *p, uint32_t size, struct fmt *f, char *err, size_t errlen) {
  if (size < 16) return bad(err, errlen, "fmt chunk too short");
  f->format = le16(p);
  f->channels = le16(p + 2);
  f->rate = le32(p + 4);
  f->bits = le16(p + 14);
  if (f->format == FMT_EXTENSIBLE) {
    if (size < 40) return bad(err, errlen, "extensible fmt chunk too short");
    f->format = le16(p + 24); /* the sub-format GUID starts with the format code */
  }
  if (f->channels < 1 || f->channels > 16) return bad(err, errlen, "unsupported channel count");
  if (f->rate < 4000 || f->rate > 384000) return bad(err, errlen, "unsupported sample rate");
  int ok = (f->format == FMT_PCM && (f->bits == 8 || f->bits == 16 || f->bits == 24 || f->bits == 32)) ||
           (f->format == FMT_FLOAT && f->bits == 32);
  if (!ok) return bad(err, errlen, "unsupported encoding (PCM 8/16/24/32-bit or 32-bit float only)");
  return 0;
}

static int16_t clamp16(double v) {
  if (v > 32767.0) return 32767;
  if (v < -32768.0) return -32768;
  return (int16_t)v;
}

static int16_t sample_at(const uint8_t *p, const struct fmt *f) {
  switch (f->bits) {
  case 8:
    return (int16_t)((p[0] - 128) * 256);
  case 16:
    return (int16_t)le16(p);
  case 24:
    return (int16_t)le16(p + 1);
  default:
    if (f->format == FMT_FLOAT) {
      float x;
      uint32_t u = le32(p);
      memcpy(&x, &u, sizeof x);
      return x != x ? 0 : clamp16((double)x * 32768.0);
    }
    return (int16_t)le16(p + 2);
  }
}

static int convert(const uint8_t *data, uint32_t size, const struct fmt *f, struct wav *out) {
  size_t width = (size_t)f->bits / 8 * (size_t)f->channels;
  out->frames = size / width;
  out->rate = (int)f->rate;
  out->channels = f->channels;
  size_t n = out->frames * (size_t)f->channels;
  out->pcm = malloc((n ? n : 1) * sizeof(int16_t));
  if (!out->pcm) return -ENOMEM;
  for (size_t i = 0; i < n; i++) out->pcm[i] = sample_at(data + i * (size_t)f->bits / 8, f);
  return 0;
}

int wav_parse(const uint8_t *d, size_t len, struct wav *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  if (len < 12 || memcmp(d, "RIFF", 4) != 0 || memcmp(d + 8, "WAVE", 4) != 0)
    return bad(err, errlen, "not a RIFF/WAVE file");
  struct fmt f = {0};
  int have_fmt = 0;
  for (size_t off = 12; off + 8 <= len;) {
    uint32_t size = le32(d + off + 4);
    const uint8_t *body = d + off + 8;
    size_t room = len - off - 8;
    if (memcmp(d + off, "fmt ", 4) == 0) {
      if (size > room) return bad(err, errlen, "fmt chunk runs past the end of the file");
      int rc = parse_fmt(body, size, &f, err, errlen);
      if (rc) return rc;
      have_fmt = 1;
    } else if (memcmp(d + off, "data", 4) == 0) {
      if (!have_fmt) return bad(err, errlen, "data chunk before the fmt chunk");
      return convert(body, size < room ? size : (uint32_t)room, &f, out);
    }
    if (size > room) break;
    off += 8 + (size_t)size + (size & 1);
  }
  return bad(err, errlen, have_fmt ? "no data chunk" : "no fmt chunk");
}

int wav_read(const char *path, struct wav *out, char *err, size_t errlen) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -errno;
  }
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 65536;
      uint8_t *grown = cap <= MAX_FILE ? realloc(buf, cap) : NULL;
      if (!grown) {
        rc = cap > MAX_FILE ? -EFBIG : -ENOMEM;
        snprintf(err, errlen, "%s: %s", path, cap > MAX_FILE ? "file too large" : "out of memory");
        break;
      }
      buf = grown;
    }
    size_t n = fread(buf + len, 1, cap - len, fp);
    len += n;
    if (n == 0) break;
  }
  fclose(fp);
  if (rc == 0) {
    char why[200];
    rc = wav_parse(buf, len, out, why, sizeof why);
    if (rc) snprintf(err, errlen, "%s: %s", path, why);
  }
  free(buf);
  return rc;
}

void wav_free(struct wav *w) {
  if (!w) return;
  free(w->pcm);
  memset(w, 0, sizeof *w);
}

int wav_mono48k(const struct wav *in, int16_t **out, size_t *n) {
  size_t frames = in->frames;
  int16_t *mono = malloc((frames ? frames : 1) * sizeof(int16_t));
  if (!mono) return -ENOMEM;
  for (size_t i = 0; i < frames; i++) {
    int sum = 0;
    for (int c = 0; c < in->channels; c++) sum += in->pcm[i * (size_t)in->channels + (size_t)c];
    mono[i] = (int16_t)(sum / in->channels);
  }
  if (in->rate == 48000) {
    *out = mono;
    *n = frames;
    return 0;
  }
  int e = 0;
  SpeexResamplerState *rs = speex_resampler_init(1, (spx_uint32_t)in->rate, 48000, 5, &e);
  if (rs) speex_resampler_skip_zeros(rs); /* the output starts where the input did */
  size_t cap = (size_t)((double)frames * 48000.0 / in->rate) + 64;
  int16_t *res = malloc(cap * sizeof(int16_t));
  if (!rs || !res) {
    if (rs) speex_resampler_destroy(rs);
    free(res);
    free(mono);
    return -ENOMEM;
  }
  /* Feed the input, then zeros to flush the filter's delay. */
  size_t done = 0, used = 0;
  int latency = speex_resampler_get_input_latency(rs);
  int16_t zeros[256] = {0};
  while (done < cap) {
    const int16_t *src = used < frames ? mono + used : zeros;
    spx_uint32_t inl = used < frames ? (spx_uint32_t)(frames - used) : (spx_uint32_t)sizeof zeros / 2;
    spx_uint32_t outl = (spx_uint32_t)(cap - done);
    speex_resampler_process_int(rs, 0, src, &inl, res + done, &outl);
    used += inl;
    done += outl;
    if (used >= frames + (size_t)latency || (inl == 0 && outl == 0)) break;
  }
  speex_resampler_destroy(rs);
  free(mono);
  size_t want = (size_t)((double)frames * 48000.0 / in->rate);
  *out = res;
  *n = done < want ? done : want;
  return 0;
}

struct wav_writer {
  FILE *fp;
  int rate, channels;
  uint32_t bytes;
  int err;
};

static void put_header(uint8_t h[44], int rate, int channels, uint32_t bytes) {
  uint32_t v[] = {36 + bytes, 16, (uint32_t)rate, (uint32_t)(rate * channels * 2), bytes};
  memcpy(h, "RIFF", 4);
  memcpy(h + 8, "WAVEfmt ", 8);
  memcpy(h + 36, "data", 4);
  const size_t at[] = {4, 16, 24, 28, 40};
  for (int i = 0; i < 5; i++)
    for (int b = 0; b < 4; b++) h[at[i] + (size_t)b] = (uint8_t)(v[i] >> (8 * b));
  h[20] = 1, h[21] = 0;                                 /* PCM */
  h[22] = (uint8_t)channels, h[23] = 0;
  h[32] = (uint8_t)(channels * 2), h[33] = 0;           /* block align */
  h[34] = 16, h[35] = 0;                                /* bits */
}

int wav_writer_open(struct wav_writer **out, const char *path, int rate, int channels) {
  struct wav_writer *w = calloc(1, sizeof *w);
  if (!w) return -ENOMEM;
  w->fp = fopen(path, "wb");
  if (!w->fp) {
    int rc = -errno;
    free(w);
    return rc;
  }
  w->rate = rate;
  w->channels = channels;
  uint8_t h[44];
  put_header(h, rate, channels, 0);
  if (fwrite(h, 1, sizeof h, w->fp) != sizeof h) w->err = -EIO;
  *out = w;
  return 0;
}

int wav_writer_write(struct wav_writer *w, const int16_t *pcm, size_t frames) {
  size_t n = frames * (size_t)w->channels;
  uint8_t buf[4096];
  for (size_t i = 0; i < n && !w->err;) {
    size_t k = 0;
    for (; i < n && k + 2 <= sizeof buf; i++, k += 2) {
      buf[k] = (uint8_t)(pcm[i] & 0xff);
      buf[k + 1] = (uint8_t)((uint16_t)pcm[i] >> 8);
    }
    if (fwrite(buf, 1, k, w->fp) != k) w->err = -EIO;
    w->bytes += (uint32_t)k;
  }
  return w->err;
}

int wav_writer_close(struct wav_writer *w) {
  if (!w) return 0;
  int rc = w->err;
  uint8_t h[44];
  put_header(h, w->rate, w->channels, w->bytes);
  if (fseek(w->fp, 0, SEEK_SET) || fwrite(h, 1, sizeof h, w->fp) != sizeof h) rc = -EIO;
  if (fclose(w->fp) && !rc) rc = -EIO;
  free(w);
  return rc;
}
