/*
 * The AI's outgoing speech.
 *
 * Audio is kept in one growable buffer at the rate it came in (the TTS
 * engine's: 16, 22.05 or 24 kHz, or 48), not at the 48 kHz calls send at: a
 * reply is queued whole as soon as the engine has made it, often seconds of
 * it, and at 16 kHz that is a third of the memory. Each 20 ms frame is
 * resampled to 48 kHz as it is taken, with one streaming resampler, so the
 * frames are the ones resampling the whole reply at once would give; audio
 * already at 48 kHz is copied as it is.
 *
 * Positions are absolute sample counts at the stored rate since the reply
 * began (written, read), so a segment is just [start, end) on that line and
 * "how much of it was heard" is read - start. The buffer is compacted once
 * the played part outgrows what is queued, grows a quarter of a second at
 * a time when it must, and is given back when everything queued has been played, so a call holds
 * audio memory only while it has something to say.
 *
 * Only rates that divide 48 kHz (8, 12, 16, 24 kHz) are stored as they come:
 * every input sample then makes a whole number of output samples, so a frame
 * of input is always exactly one frame out. Others (espeak-ng's 22.05 kHz)
 * are resampled to 48 kHz on the way in, as all audio used to be. The rate
 * changes only when the engine does (a call's voice or language changed
 * mid-reply, a fallback engine); then what is queued, and everything after
 * it in this reply, is kept at 48 kHz, with the positions scaled to match,
 * and the next reply starts at its own engine's rate again.
 *
 * A reply kept at 16 kHz also hands out, with each frame, the 16 kHz
 * samples it was made from: the echo canceller works at 16 kHz, and its
 * reference used to be each sent frame resampled back down, a second pass
 * that cost about as much as the first only to undo it. The samples handed
 * out pass through a short delay line as long as the two resamplers'
 * delays together (up to 48 kHz and back down, 24 samples each at quality
 * 3), so they are, to the sample and partial frames and all, the frame
 * sent as resampling it back to 16 kHz gives it: the reference the echo
 * canceller always had, and whose timing its tests were tuned to (an echo
 * reaches it through a like conversion, the decoder's to 16 kHz).
 */
#include "agent/playout.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audio/resample.h"

#define QUALITY 3 /* speexdsp's scale: good for voice, cheap */
#define RATE16 16000
#define LAG_MAX 64 /* longest delay the 16 kHz copy follows, in samples */
#define DOWN_DELAY16 24 /* a 48 -> 16 kHz quality-3 resampler's delay, at 16 kHz */

struct segment {
  char *text;
  uint64_t start, end; /* absolute samples at p->rate; end valid when ended */
  int ended, announced;
};

struct playout {
  int16_t *buf;
  size_t cap, head, tail; /* buf[head..tail) is queued, at p->rate */
  int rate;               /* of what is stored; 0 until the reply's first audio */
  size_t frame;           /* samples of 20 ms at p->rate */
  uint64_t written, read;
  struct segment *segs;
  size_t nsegs, segcap;
  struct resampler *up; /* p->rate -> 48 kHz, as frames are taken */
  struct resampler *in; /* in_rate -> 48 kHz, as audio at a rate not stored comes in */
  int in_rate;
  int made_rate;        /* the highest rate the reply's audio came in at: its bandwidth's twice */
  int16_t sent16[PLAYOUT_FRAME16]; /* the last frame taken, at 16 kHz, when has_sent16 */
  int has_sent16;
  int16_t lag[LAG_MAX]; /* stored samples taken but still inside the resampler */
  int lag_n;            /* the delay line's length; -1: no 16 kHz copy at this rate */
};

int playout_new(struct playout **out) {
  struct playout *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->lag_n = -1;
  *out = p;
  return 0;
}

static void free_segments(struct playout *p) {
  for (size_t i = 0; i < p->nsegs; i++) free(p->segs[i].text);
  p->nsegs = 0;
}

static void release_buffer(struct playout *p) {
  free(p->buf);
  p->buf = NULL;
  p->cap = p->head = p->tail = 0;
}

void playout_free(struct playout *p) {
  if (!p) return;
  free_segments(p);
  free(p->segs);
  free(p->buf);
  resampler_free(p->up);
  resampler_free(p->in);
  free(p);
}

void playout_clear(struct playout *p) {
  free_segments(p);
  release_buffer(p);
  p->written = p->read = 0;
  p->rate = 0;
  resampler_free(p->up);
  resampler_free(p->in);
  p->up = p->in = NULL;
  p->in_rate = p->made_rate = 0;
  p->has_sent16 = 0;
  p->lag_n = -1;
}

int playout_begin_segment(struct playout *p, const char *text) {
  if (p->nsegs == p->segcap) {
    size_t ncap = p->segcap ? p->segcap * 2 : 8;
    struct segment *s = realloc(p->segs, ncap * sizeof *s);
    if (!s) return -ENOMEM;
    p->segs = s;
    p->segcap = ncap;
  }
  char *copy = strdup(text);
  if (!copy) return -ENOMEM;
  p->segs[p->nsegs++] = (struct segment){.text = copy, .start = p->written};
  return 0;
}

void playout_end_segment(struct playout *p) {
  if (p->nsegs && !p->segs[p->nsegs - 1].ended) {
    p->segs[p->nsegs - 1].ended = 1;
    p->segs[p->nsegs - 1].end = p->written;
  }
}

/* Room for n more samples at the tail. */
static int reserve(struct playout *p, size_t n) {
  if (p->head > 0 && p->head >= p->tail - p->head) {
    memmove(p->buf, p->buf + p->head, (p->tail - p->head) * sizeof *p->buf);
    p->tail -= p->head;
    p->head = 0;
  }
  if (p->tail + n <= p->cap) return 0;
  /* Grown in steps of a quarter of a second, not by a factor: a reply's audio comes a
   * sentence at a time, just ahead of playback, and a factor would leave a call holding up
   * to half as much again as it needs; a step costs a copy of what is queued (a few
   * seconds at most) every quarter of a second of audio at most. */
  size_t step = (size_t)p->rate / 4;
  size_t ncap = (p->tail + n + step - 1) / step * step;
  int16_t *b = realloc(p->buf, ncap * sizeof *b);
  if (!b) return -ENOMEM;
  p->buf = b;
  p->cap = ncap;
  return 0;
}

/* The rate audio at `rate` is stored at. */
static int stored_rate(int rate) { return rate >= 8000 && PLAYOUT_RATE % rate == 0 ? rate : PLAYOUT_RATE; }

static int set_rate(struct playout *p, int rate) {
  struct resampler *up = NULL;
  if (rate != PLAYOUT_RATE) {
    int rc = resampler_new(&up, rate, PLAYOUT_RATE, QUALITY);
    if (rc) return rc;
  }
  resampler_free(p->up);
  p->up = up;
  p->rate = rate;
  p->frame = (size_t)rate / 50;
  p->lag_n = rate == RATE16 ? resampler_input_latency(up) + DOWN_DELAY16 : -1;
  if (p->lag_n > LAG_MAX) p->lag_n = -1;
  memset(p->lag, 0, sizeof p->lag); /* a new resampler starts from silence */
  return 0;
}

static uint64_t scale(uint64_t pos, int from, int to) { return pos * (uint64_t)to / (uint64_t)from; }

/* The rest of this reply is kept at 48 kHz: what is queued goes through
 * the take resampler, so it joins what was taken without a seam, and every
 * position is scaled. */
static int switch_to_48k(struct playout *p) {
  size_t queued = p->tail - p->head, cap = queued * (PLAYOUT_RATE / (size_t)p->rate) + 16, n = 0;
  int16_t *conv = malloc(cap * sizeof *conv);
  if (!conv) return -ENOMEM;
  if (queued) n = resampler_process(p->up, p->buf + p->head, queued, conv, cap);
  int from = p->rate;
  int rc = set_rate(p, PLAYOUT_RATE);
  if (rc) {
    free(conv);
    return rc;
  }
  for (size_t i = 0; i < p->nsegs; i++) {
    p->segs[i].start = scale(p->segs[i].start, from, PLAYOUT_RATE);
    p->segs[i].end = scale(p->segs[i].end, from, PLAYOUT_RATE);
  }
  p->read = scale(p->read, from, PLAYOUT_RATE);
  p->written = p->read + n;
  free(p->buf);
  p->buf = conv;
  p->cap = cap;
  p->tail = n;
  p->head = 0;
  return 0;
}

/* Stores n samples at p->rate. */
static int store(struct playout *p, const int16_t *pcm, size_t n) {
  if (reserve(p, n)) return -ENOMEM;
  memcpy(p->buf + p->tail, pcm, n * sizeof *pcm);
  p->tail += n;
  p->written += n;
  return 0;
}

/* Stores audio at `rate` (not p->rate, which is 48 kHz) resampled, with one
 * streaming resampler per rate so chunk boundaries leave no seams. */
static int store_resampled(struct playout *p, const int16_t *pcm, size_t n, int rate) {
  if (rate != p->in_rate) {
    resampler_free(p->in);
    p->in = NULL;
    p->in_rate = 0;
    int rc = resampler_new(&p->in, rate, PLAYOUT_RATE, QUALITY);
    if (rc) return rc;
    p->in_rate = rate;
  }
  size_t need = n * PLAYOUT_RATE / (size_t)rate + 16;
  if (reserve(p, need)) return -ENOMEM;
  size_t got = resampler_process(p->in, pcm, n, p->buf + p->tail, need);
  p->tail += got;
  p->written += got;
  return 0;
}

int playout_made_rate(const struct playout *p) { return p->made_rate; }

int playout_append(struct playout *p, const int16_t *pcm, size_t n, int rate) {
  if (rate <= 0) return -EINVAL;
  if (rate > p->made_rate) p->made_rate = rate;
  int want = stored_rate(rate), rc = 0;
  if (p->rate == 0) rc = set_rate(p, want);
  else if (want != p->rate && p->rate != PLAYOUT_RATE) rc = switch_to_48k(p);
  if (rc) return rc;
  return rate == p->rate ? store(p, pcm, n) : store_resampled(p, pcm, n, rate);
}

/* The segment that the sample at `pos` belongs to, announcing its start once. */
static const char *announce(struct playout *p, uint64_t pos) {
  for (size_t i = 0; i < p->nsegs; i++) {
    struct segment *s = &p->segs[i];
    if (!s->announced && pos >= s->start && s->start < p->written) {
      s->announced = 1;
      return s->text;
    }
  }
  return NULL;
}

/* The 16 kHz samples behind the frame just made from `in` (n samples): the
 * delay line, then this frame's own, whose last lag_n stay in the line. */
static void keep_sent16(struct playout *p, const int16_t *in, size_t n) {
  size_t lag = (size_t)p->lag_n;
  int16_t *out = p->sent16;
  if (n >= lag) {
    memcpy(out, p->lag, lag * sizeof *out);
    memcpy(out + lag, in, (n - lag) * sizeof *out);
    memcpy(p->lag, in + n - lag, lag * sizeof *out);
  } else {
    memcpy(out, p->lag, n * sizeof *out);
    memmove(p->lag, p->lag + n, (lag - n) * sizeof *out);
    memcpy(p->lag + lag - n, in, n * sizeof *out);
  }
  memset(out + n, 0, (PLAYOUT_FRAME16 - n) * sizeof *out);
  p->has_sent16 = 1;
}

int playout_take(struct playout *p, int16_t *pcm, const char **started) {
  *started = NULL;
  p->has_sent16 = 0;
  size_t queued = p->tail - p->head;
  if (queued == 0) return 0;
  size_t n = queued < p->frame ? queued : p->frame, out = n;
  if (p->up) out = resampler_process(p->up, p->buf + p->head, n, pcm, PLAYOUT_FRAME);
  else memcpy(pcm, p->buf + p->head, n * sizeof *pcm);
  if (p->lag_n >= 0) keep_sent16(p, p->buf + p->head, n);
  if (out < PLAYOUT_FRAME) memset(pcm + out, 0, (PLAYOUT_FRAME - out) * sizeof *pcm);
  *started = announce(p, p->read);
  p->head += n;
  p->read += n;
  if (p->head == p->tail) release_buffer(p); /* nothing to say: hold no audio memory */
  return 1;
}

const int16_t *playout_sent16(const struct playout *p) { return p->has_sent16 ? p->sent16 : NULL; }

size_t playout_queued(const struct playout *p) {
  size_t queued = p->tail - p->head;
  return p->rate ? (size_t)scale(queued, p->rate, PLAYOUT_RATE) : 0;
}

size_t playout_memory(const struct playout *p) { return p->cap * sizeof *p->buf; }

int playout_drained(const struct playout *p) {
  if (p->tail != p->head) return 0;
  for (size_t i = 0; i < p->nsegs; i++)
    if (!p->segs[i].ended) return 0;
  return 1;
}

/* A word starts here: a CJK character (a 3-byte UTF-8 lead), or ASCII after a space. */
static int starts_word(const char *text, size_t i) {
  unsigned char c = (unsigned char)text[i];
  return (c >= 0xE0 && c < 0xF0) || (c != ' ' && c < 0x80 && (i == 0 || text[i - 1] == ' '));
}
/* Appends the first `share` (0..1) of the words of `text`; a CJK character counts as a word. */
static void append_words(char *out, size_t cap, const char *text, double share) {
  size_t len = strlen(text), words = 0, cut = len;
  for (size_t i = 0; i < len; i++) words += (size_t)starts_word(text, i);
  size_t keep = (size_t)(share * (double)words + 0.5), seen = 0;
  for (size_t i = 0; i < len && keep < words; i++) {
    if (starts_word(text, i) && seen++ == keep) {
      cut = i;
      break;
    }
  }
  while (cut > 0 && text[cut - 1] == ' ') cut--;
  size_t used = strlen(out);
  if (cut == 0 || used + 1 >= cap) return;
  if (used) out[used++] = ' ';
  size_t room = cap - used - 1;
  if (cut > room) cut = room;
  memcpy(out + used, text, cut);
  out[used + cut] = '\0';
}

void playout_played_text(const struct playout *p, char *out, size_t cap, int *complete) {
  out[0] = '\0';
  *complete = 1;
  for (size_t i = 0; i < p->nsegs; i++) {
    const struct segment *s = &p->segs[i];
    uint64_t end = s->ended ? s->end : p->written;
    if (p->read <= s->start && end > s->start) {
      *complete = 0;
      break;
    }
    if (p->read >= end && s->ended) {
      append_words(out, cap, s->text, 1.0);
      continue;
    }
    double share = end > s->start ? (double)(p->read - s->start) / (double)(end - s->start) : 0;
    append_words(out, cap, s->text, share);
    *complete = 0;
    break;
  }
}
