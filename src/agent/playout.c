/*
 * The AI's outgoing speech.
 *
 * Audio is kept in one growable buffer of 48 kHz samples; positions are
 * absolute sample counts since the reply began (written, read), so a
 * segment is just [start, end) on that line and "how much of it was heard"
 * is read - start. The buffer is compacted once the played part outgrows
 * what is queued, which keeps it about the size of the longest backlog.
 *
 * TTS engines speak at their own rates (16, 22.05 or 24 kHz); one
 * resampler is kept for the rate in use and replaced when it changes.
 */
#include "agent/playout.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audio/resample.h"

struct segment {
  char *text;
  uint64_t start, end; /* absolute samples; end valid when ended */
  int ended, announced;
};

struct playout {
  int16_t *buf;
  size_t cap, head, tail; /* buf[head..tail) is queued */
  uint64_t written, read;
  struct segment *segs;
  size_t nsegs, segcap;
  struct resampler *rs;
  int rs_rate;
};

int playout_new(struct playout **out) {
  struct playout *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  *out = p;
  return 0;
}

static void free_segments(struct playout *p) {
  for (size_t i = 0; i < p->nsegs; i++) free(p->segs[i].text);
  p->nsegs = 0;
}

void playout_free(struct playout *p) {
  if (!p) return;
  free_segments(p);
  free(p->segs);
  free(p->buf);
  resampler_free(p->rs);
  free(p);
}

void playout_clear(struct playout *p) {
  free_segments(p);
  p->head = p->tail = 0;
  p->written = p->read = 0;
  if (p->rs) resampler_reset(p->rs);
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
  size_t ncap = p->cap ? p->cap : PLAYOUT_RATE;
  while (ncap < p->tail + n) ncap *= 2;
  int16_t *b = realloc(p->buf, ncap * sizeof *b);
  if (!b) return -ENOMEM;
  p->buf = b;
  p->cap = ncap;
  return 0;
}

int playout_append(struct playout *p, const int16_t *pcm, size_t n, int rate) {
  if (rate != PLAYOUT_RATE && rate != p->rs_rate) {
    resampler_free(p->rs);
    p->rs = NULL;
    p->rs_rate = 0;
    int rc = resampler_new(&p->rs, rate, PLAYOUT_RATE, 3);
    if (rc) return rc;
    p->rs_rate = rate;
  }
  size_t need = rate == PLAYOUT_RATE ? n : n * PLAYOUT_RATE / (size_t)rate + 16;
  if (reserve(p, need)) return -ENOMEM;
  size_t got = need;
  if (rate == PLAYOUT_RATE) memcpy(p->buf + p->tail, pcm, n * sizeof *pcm);
  else got = resampler_process(p->rs, pcm, n, p->buf + p->tail, need);
  p->tail += got;
  p->written += got;
  return 0;
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

int playout_take(struct playout *p, int16_t *pcm, const char **started) {
  *started = NULL;
  size_t queued = p->tail - p->head;
  if (queued == 0) return 0;
  size_t n = queued < PLAYOUT_FRAME ? queued : PLAYOUT_FRAME;
  memcpy(pcm, p->buf + p->head, n * sizeof *pcm);
  if (n < PLAYOUT_FRAME) memset(pcm + n, 0, (PLAYOUT_FRAME - n) * sizeof *pcm);
  *started = announce(p, p->read);
  p->head += n;
  p->read += n;
  return 1;
}

size_t playout_queued(const struct playout *p) { return p->tail - p->head; }

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
