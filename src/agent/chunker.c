/*
 * Sentence chunker.
 *
 * Text goes through two stages. The first drops markdown as it arrives:
 * '*' and '`' everywhere, and at the start of a line heading marks, quote
 * marks and list bullets ("- ", "+ ", "• ", "1. ", "2) "). Deciding whether a
 * line starts with a bullet needs a few characters of lookahead, so the
 * start of each line waits in `lead` until it is clear.
 *
 * The second stage keeps the cleaned text of the sentence in progress in
 * `buf` and looks for where it ends. Every decision is made from the text
 * alone, never from how it was split into pushes: when a decision needs a
 * character that has not arrived yet (is "3." followed by a digit? is "。"
 * followed by a closing quote? is the byte at the end the first half of a
 * character?), scanning stops there and resumes on the next push, or on
 * flush, where the end of the stream is the answer. So any split of the
 * same stream gives the same sentences, which the tests check exhaustively.
 *
 * Lengths are counted in bytes: a CJK character is three bytes and about one
 * syllable, an English letter one byte and about a third of one, so bytes
 * measure speaking time well enough for both.
 */
#include "agent/chunker.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_MIN 12   /* a first sentence shorter than this waits for the next one */
#define COMMA_CUT 80   /* past this, a comma ends the piece */
#define SPACE_CUT 200  /* past this, a space or a CJK character does */
#define ANY_CUT 400    /* past this, any character boundary does */
#define LEAD_MAX 8     /* longest line-start lookahead: spaces and a number "123." */

struct chunker {
  char *buf;           /* cleaned text not yet emitted */
  size_t len, cap;
  size_t scan;         /* everything before this is known not to end a piece */
  char *held;          /* a short first piece waiting to be joined */
  char lead[LEAD_MAX + 1];
  size_t lead_len;
  int at_line_start;
  int emitted;         /* a piece has gone out since the last reset */
};

int chunker_new(struct chunker **out) {
  struct chunker *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  c->at_line_start = 1;
  *out = c;
  return 0;
}

void chunker_reset(struct chunker *c) {
  c->len = c->scan = c->lead_len = 0;
  free(c->held);
  c->held = NULL;
  c->at_line_start = 1;
  c->emitted = 0;
}

void chunker_free(struct chunker *c) {
  if (!c) return;
  free(c->buf);
  free(c->held);
  free(c);
}

/* ---- UTF-8 ---- */

/* Length of the sequence a lead byte starts; 1 for ASCII and for stray bytes. */
static size_t utf8_len(unsigned char b) {
  if (b >= 0xF0 && b < 0xF8) return 4;
  if (b >= 0xE0) return b < 0xF0 ? 3 : 1;
  if (b >= 0xC0) return 2;
  return 1;
}

/* Decodes the character at s[0..avail); *n = its length, 0 if incomplete. */
static unsigned decode(const char *s, size_t avail, size_t *n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t k = utf8_len(u[0]);
  if (k > avail) {
    *n = 0;
    return 0;
  }
  if (k == 1) {
    *n = 1;
    return u[0] < 0x80 ? u[0] : 0xFFFD; /* a stray byte */
  }
  unsigned cp = u[0] & (0x7F >> k);
  for (size_t i = 1; i < k; i++) {
    if ((u[i] & 0xC0) != 0x80) { /* broken sequence: take the lead byte alone */
      *n = 1;
      return 0xFFFD;
    }
    cp = cp << 6 | (u[i] & 0x3F);
  }
  *n = k;
  return cp;
}

static int is_cjk_end(unsigned cp) { return cp == 0x3002 || cp == 0xFF01 || cp == 0xFF1F || cp == 0xFF1B; }
static int is_cjk_comma(unsigned cp) { return cp == 0xFF0C || cp == 0x3001; }
static int is_ascii_end(unsigned cp) { return cp == '.' || cp == '!' || cp == '?' || cp == ';'; }
static int is_closer(unsigned cp) {
  return cp == '"' || cp == '\'' || cp == ')' || cp == ']' || cp == 0x201D || cp == 0x2019 ||
         cp == 0x300D || cp == 0x300F || cp == 0xFF09 || cp == 0x300B;
}
static int is_space(unsigned cp) { return cp == ' ' || cp == '\t' || cp == '\r' || cp == '\f' || cp == '\v'; }
static int is_cjk(unsigned cp) {
  return (cp >= 0x2E80 && cp <= 0x9FFF) || (cp >= 0xF900 && cp <= 0xFAFF) ||
         (cp >= 0xFF00 && cp <= 0xFFEF) || (cp >= 0x20000 && cp <= 0x3FFFF);
}
/* Punctuation and symbols outside ASCII that a voice would not say. */
static int is_silent(unsigned cp) {
  return (cp >= 0x2000 && cp <= 0x206F) || (cp >= 0x3000 && cp <= 0x303F) ||
         (cp >= 0xFF01 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) || cp == 0xFFFD;
}

/* ---- the cleaned buffer ---- */

static int buf_add(struct chunker *c, const char *s, size_t n) {
  if (c->len + n > c->cap) {
    size_t cap = c->cap ? c->cap : 256;
    while (cap < c->len + n) cap *= 2;
    char *b = realloc(c->buf, cap);
    if (!b) return -ENOMEM;
    c->buf = b;
    c->cap = cap;
  }
  memcpy(c->buf + c->len, s, n);
  c->len += n;
  return 0;
}

/* ---- stage 1: markdown ---- */

enum lead_verdict { LEAD_WAIT, LEAD_MARK, LEAD_TEXT };

/* Does the start of a line, so far, begin with a bullet, a heading or a quote mark? */
static enum lead_verdict judge_lead(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
  if (i == n) return n >= LEAD_MAX ? LEAD_TEXT : LEAD_WAIT;
  const char *p = s + i;
  size_t m = n - i;
  size_t k = 0;
  if (p[0] == '-' || p[0] == '+' || p[0] == '>') k = 1;
  else if (m >= 3 && memcmp(p, "\xE2\x80\xA2", 3) == 0) k = 3; /* • */
  else if ((unsigned char)p[0] == 0xE2 && m < 3 && (m < 2 || (unsigned char)p[1] == 0x80)) return LEAD_WAIT;
  else if (p[0] == '#') {
    while (k < m && p[k] == '#') k++;
    if (k == m) return LEAD_WAIT;
  } else if (isdigit((unsigned char)p[0])) {
    while (k < m && k < 3 && isdigit((unsigned char)p[k])) k++;
    if (k == m) return n >= LEAD_MAX ? LEAD_TEXT : LEAD_WAIT;
    if (p[k] != '.' && p[k] != ')') return LEAD_TEXT;
    k++;
  } else {
    return LEAD_TEXT;
  }
  if (k == m) return LEAD_WAIT;
  return p[k] == ' ' || p[k] == '\t' ? LEAD_MARK : LEAD_TEXT;
}

static void clean_byte(struct chunker *c, char ch) {
  if (ch == '*' || ch == '`') return;
  if (c->at_line_start && ch != '\n') {
    c->lead[c->lead_len++] = ch;
    enum lead_verdict v = judge_lead(c->lead, c->lead_len);
    if (v == LEAD_WAIT && c->lead_len < LEAD_MAX) return;
    if (v != LEAD_MARK) buf_add(c, c->lead, c->lead_len);
    c->lead_len = 0;
    c->at_line_start = 0;
    return;
  }
  if (c->lead_len) buf_add(c, c->lead, c->lead_len); /* a line that was all spaces */
  c->lead_len = 0;
  buf_add(c, &ch, 1);
  c->at_line_start = ch == '\n';
}

/* ---- stage 2: where a piece ends ---- */

/* Titles and the like: a period after these never ends a sentence. */
static const char *const never_end[] = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt",
                                        "vs", "e.g", "i.e", "cf", "approx", "fig", "gen", "gov",
                                        "lt", "col", "sgt", "capt", "rev", "hon", NULL};
/* These end a sentence only when the next word starts with a capital. */
static const char *const maybe_end[] = {"etc", "a.m", "p.m", "inc", "ltd", "co", "corp", "jan",
                                        "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
                                        "oct", "nov", "dec", "no", "vol", NULL};

enum abbrev { ABBR_NONE, ABBR_NEVER, ABBR_MAYBE };

/* What kind of word stands before the period at `dot`. */
static enum abbrev abbrev_before(const char *s, size_t dot) {
  size_t b = dot;
  while (b > 0 && (isalpha((unsigned char)s[b - 1]) || s[b - 1] == '.')) b--;
  size_t n = dot - b;
  if (n == 0 || n > 8) return ABBR_NONE;
  if (n == 1 && isupper((unsigned char)s[b])) return ABBR_NEVER; /* an initial: J. R. R. */
  char w[9];
  for (size_t i = 0; i < n; i++) w[i] = (char)tolower((unsigned char)s[b + i]);
  w[n] = 0;
  for (int i = 0; never_end[i]; i++)
    if (strcmp(w, never_end[i]) == 0) return ABBR_NEVER;
  for (int i = 0; maybe_end[i]; i++)
    if (strcmp(w, maybe_end[i]) == 0) return ABBR_MAYBE;
  return memchr(w, '.', n) ? ABBR_MAYBE : ABBR_NONE; /* U.S. and the like */
}

enum verdict { V_NO, V_CUT, V_WAIT };

/*
 * After a terminator run ending at `j`: 1 if followed by a space, the end
 * of the stream, or a character outside ASCII; 0 if glued to more text
 * ("3.14", "e.g"); -1 if the next character has not arrived.
 */
static int followed_by_break(const struct chunker *c, size_t j, int final) {
  if (j >= c->len) return final ? 1 : -1;
  unsigned char b = (unsigned char)c->buf[j];
  return is_space(b) || b == '\n' || b >= 0x80;
}

/* Consumes terminators and closing quotes from `i`; returns the end, or 0 when incomplete. */
static size_t end_run(const struct chunker *c, size_t i) {
  size_t j = i, n;
  while (j < c->len) {
    unsigned cp = decode(c->buf + j, c->len - j, &n);
    if (n == 0) return 0;
    if (!is_ascii_end(cp) && !is_cjk_end(cp) && !is_closer(cp)) break;
    j += n;
  }
  return j;
}

static enum verdict judge_period_word(const struct chunker *c, size_t i, size_t j, int final) {
  enum abbrev a = abbrev_before(c->buf, i);
  if (a == ABBR_NEVER) return V_NO;
  if (a == ABBR_NONE) return V_CUT;
  size_t k = j;
  while (k < c->len && (is_space((unsigned char)c->buf[k]) || c->buf[k] == '\n')) k++;
  if (k == c->len) return final ? V_CUT : V_WAIT;
  unsigned char b = (unsigned char)c->buf[k];
  return isupper(b) || b >= 0x80 ? V_CUT : V_NO;
}

/* Does the character at i, of length n, end the piece? *end = where the piece stops. */
static enum verdict judge(const struct chunker *c, size_t i, unsigned cp, size_t n, int final,
                          size_t *end) {
  if (cp == '\n') {
    *end = i;
    return V_CUT;
  }
  if (is_ascii_end(cp) || is_cjk_end(cp)) {
    size_t j = end_run(c, i);
    if (j == 0 || (j == c->len && !final)) return V_WAIT;
    *end = j;
    if (is_cjk_end(cp)) return V_CUT;
    int brk = followed_by_break(c, j, final);
    if (brk <= 0) return brk < 0 ? V_WAIT : V_NO;
    return cp == '.' ? judge_period_word(c, i, j, final) : V_CUT;
  }
  *end = i + n;
  if (is_cjk_comma(cp) || cp == ',') {
    if (i + n < COMMA_CUT) return V_NO;
    if (is_cjk_comma(cp)) return V_CUT;
    int brk = followed_by_break(c, i + n, final);
    return brk < 0 ? V_WAIT : brk ? V_CUT : V_NO;
  }
  if (i >= ANY_CUT) return V_CUT;
  if (i >= SPACE_CUT && (is_space(cp) || is_cjk(cp))) return V_CUT;
  return V_NO;
}

/* ---- pieces ---- */

static int speakable(const char *s) {
  size_t len = strlen(s), n;
  for (size_t i = 0; i < len; i += n ? n : 1) {
    unsigned cp = decode(s + i, len - i, &n);
    if (cp < 0x80 ? isalnum((int)cp) : !is_silent(cp)) return 1;
  }
  return 0;
}

/*
 * Copies s[0..n) with runs of white space made one space, the ends trimmed
 * and bytes that are not UTF-8 dropped, so what is emitted is always text.
 */
static char *tidy(const char *s, size_t n) {
  char *out = malloc(n + 1);
  if (!out) return NULL;
  size_t o = 0, k;
  int gap = 0;
  for (size_t i = 0; i < n; i += k ? k : n - i) {
    unsigned cp = decode(s + i, n - i, &k);
    if (k == 0 || (cp == 0xFFFD && k == 1)) continue;
    if (is_space(cp) || cp == '\n') {
      gap = 1;
      continue;
    }
    if (gap && o) out[o++] = ' ';
    gap = 0;
    memcpy(out + o, s + i, k);
    o += k;
  }
  out[o] = 0;
  return out;
}

/* Joins a held short piece and the next; CJK text joins without a space. */
static char *join(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  char *out = malloc(na + nb + 2);
  if (!out) return NULL;
  int space = na && (unsigned char)a[na - 1] < 0x80;
  memcpy(out, a, na);
  if (space) out[na] = ' ';
  memcpy(out + na + space, b, nb + 1);
  return out;
}

/*
 * Sends one piece on, holding it first if it is a short opening one. At the
 * end of the stream (final) a held piece goes out whatever follows it.
 */
static void deliver(struct chunker *c, char *piece, int final, chunker_emit emit, void *user) {
  if (piece && !speakable(piece)) {
    free(piece);
    piece = NULL;
  }
  if (c->held && (piece || final)) {
    char *j = piece ? join(c->held, piece) : c->held;
    if (piece) {
      free(piece);
      free(c->held);
    }
    c->held = NULL;
    piece = j;
  }
  if (!piece) return;
  if (!c->emitted && !final && strlen(piece) < FIRST_MIN) {
    c->held = piece;
    return;
  }
  c->emitted = 1;
  emit(user, piece);
  free(piece);
}

/* Takes buf[0..end) out as a piece, dropping buf[end..next). */
static void cut(struct chunker *c, size_t end, size_t next, chunker_emit emit, void *user) {
  char *piece = tidy(c->buf, end);
  memmove(c->buf, c->buf + next, c->len - next);
  c->len -= next;
  c->scan = 0;
  if (piece) deliver(c, piece, 0, emit, user);
}

static void scan(struct chunker *c, int final, chunker_emit emit, void *user) {
  size_t i = c->scan;
  while (i < c->len) {
    size_t n, end = 0;
    unsigned cp = decode(c->buf + i, c->len - i, &n);
    if (n == 0) {
      if (!final) break;
      n = c->len - i; /* a character cut off by the end of the stream */
    }
    enum verdict v = judge(c, i, cp, n, final, &end);
    if (v == V_WAIT) break;
    if (v == V_CUT) {
      cut(c, end, cp == '\n' ? i + 1 : end, emit, user);
      i = 0;
      continue;
    }
    i += n;
  }
  c->scan = i < c->len ? i : c->len;
}

void chunker_push(struct chunker *c, const char *text, chunker_emit emit, void *user) {
  for (const char *p = text; *p; p++) clean_byte(c, *p);
  scan(c, 0, emit, user);
}

void chunker_flush(struct chunker *c, chunker_emit emit, void *user) {
  if (c->lead_len) buf_add(c, c->lead, c->lead_len);
  c->lead_len = 0;
  scan(c, 1, emit, user);
  char *rest = c->len ? tidy(c->buf, c->len) : NULL;
  c->len = c->scan = 0;
  deliver(c, rest, 1, emit, user);
  chunker_reset(c);
}
