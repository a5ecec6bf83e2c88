/*
 * The end-of-turn rule: how long a pause must last before the caller's
 * turn is over.
 *
 * A fixed silence is either slow or rude: long enough for someone who
 * stops to think in mid-sentence ("I'd like to book a table for ...") it
 * makes every finished question wait, and short enough for a quick answer
 * it cuts people off. People judge mostly by the words: a phrase that ends
 * on "for", "and", "because", "um", or in the middle of a run of digits is
 * not finished, whatever the pause; a sentence that is whole usually is.
 * So the words decide between the two bounds (`endpoint_min_ms`,
 * `endpoint_ms`), and the pitch only decides when there are no words to go
 * by (a service that gives no partial transcript): a statement ends with
 * its pitch falling, a phrase held open keeps it level.
 *
 * The rules are small lists, not a model: they must run on the media
 * worker in microseconds, explain themselves in docs/turns.md, and be easy
 * to extend for a domain (a form that asks for a date, a shop's words).
 */
#include "agent/turn.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* English words after which a phrase cannot end: conjunctions, prepositions, articles,
 * possessives, subject pronouns, hesitations. */
static const char *const open_words[] = {
    "and", "or", "but", "because", "cause", "if", "when", "while", "than", "that", "which",
    "who", "whose", "where", "whether", "although", "though", "unless", "until", "since",
    "the", "a", "an", "to", "for", "of", "with", "without", "in", "on", "at", "by", "from",
    "into", "onto", "about", "as", "like", "between", "after", "before", "during", "through",
    "my", "your", "our", "their", "his", "its", "this", "these", "those", "some", "any",
    "every", "each", "i", "we", "they", "i'd", "i'm", "i'll", "we'd", "we're", "i've",
    "um", "uh", "er", "erm", "ah", "hmm", "plus", "minus", "times", "divided", "also",
    "then", "is", "am", NULL};

/* The same for Chinese, matched at the end of the text. */
static const char *const open_suffixes_zh[] = {
    "和", "跟", "与", "或者", "还有", "因为", "所以", "但是", "可是", "然后", "而且", "如果",
    "就是", "那个", "这个", "呃", "额", "把", "被", "从", "给", "在", "往", "向", "比", "我想",
    "我要", "想要", "需要", "是不是", "加", "减", "乘以", "除以", NULL};

static const char *const number_words[] = {
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    "hundred", "thousand", "double", "triple", NULL};

/* What the AI says when it asks for something dictated digit by digit. */
static const char *const asks_digits[] = {"number", "digits", "phone", "code", "zip",
                                          "postcode", "account", "号码", "电话", "验证码",
                                          "卡号", "编号", NULL};

static const char *const zh_digits[] = {"零", "〇", "一", "二", "三", "四", "五", "六",
                                        "七", "八", "九", "幺", "两", NULL};

static int in_list(const char *const *list, const char *s, size_t n) {
  for (int i = 0; list[i]; i++)
    if (strlen(list[i]) == n && strncmp(list[i], s, n) == 0) return 1;
  return 0;
}

/* Length of the UTF-8 character that ends at text[end - 1]. */
static size_t last_char_len(const char *text, size_t end) {
  size_t n = 1;
  while (n < end && n < 4 && ((unsigned char)text[end - n] & 0xC0) == 0x80) n++;
  return n;
}

enum punct { P_NONE, P_STOP, P_OPEN };

static enum punct punct_of(const char *c, size_t n) {
  static const char *const stop[] = {".", "?", "!", "。", "？", "！", NULL};
  static const char *const open[] = {",", ";", ":", "-", "，", "、", "；", "：", "…", NULL};
  if (in_list(stop, c, n)) return P_STOP;
  if (in_list(open, c, n)) return P_OPEN;
  return P_NONE;
}

/* Strips spaces and punctuation from the end; returns the length left and the punctuation
 * that was nearest the words ("for." says STOP, "three, " says OPEN). */
static size_t trim_end(const char *text, size_t end, enum punct *p) {
  *p = P_NONE;
  while (end) {
    unsigned char c = (unsigned char)text[end - 1];
    size_t n = last_char_len(text, end);
    enum punct q = punct_of(text + end - n, n);
    if (q == P_NONE && !(c < 0x80 && (isspace(c) || c == '"' || c == '\'' || c == ')'))) break;
    if (q != P_NONE) *p = q;
    end -= n;
  }
  return end;
}

static int is_word_byte(unsigned char c) { return c < 0x80 && (isalnum(c) || c == '\'' || c == '-'); }

static int is_number_word(const char *w, size_t n) {
  if (in_list(number_words, w, n)) return 1;
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)w[i]) && w[i] != '-') return 0;
  return n > 0;
}

static int asked_for_digits(const char *ai_last) {
  char low[512];
  size_t n = 0;
  for (; ai_last[n] && n + 1 < sizeof low; n++) low[n] = (char)tolower((unsigned char)ai_last[n]);
  low[n] = '\0';
  for (int i = 0; asks_digits[i]; i++)
    if (strstr(low, asks_digits[i])) return 1;
  return 0;
}

/* Verbs that ask for what comes next: "could you tell me ...", "let me ...". */
static const char *const open_pairs[] = {"tell me", "give me", "show me", "send me", "bring me",
                                         "get me", "let me", "find me", "tell us", "give us",
                                         "show us", "let us", NULL};

#define TAIL_WORDS 8

/* The last words of text[0..end), lower case, last first; returns how many (at most
 * TAIL_WORDS), stopping at the first character that is not English. */
static int tail_words(const char *text, size_t end, char w[][32]) {
  int k = 0;
  while (end && k < TAIL_WORDS) {
    while (end && !is_word_byte((unsigned char)text[end - 1]) && (unsigned char)text[end - 1] < 0x80)
      end--;
    if (!end || (unsigned char)text[end - 1] >= 0x80) break;
    size_t start = end;
    while (start && is_word_byte((unsigned char)text[start - 1])) start--;
    size_t n = end - start < 31 ? end - start : 31;
    for (size_t i = 0; i < n; i++) w[k][i] = (char)tolower((unsigned char)text[start + i]);
    w[k++][n] = '\0';
    end = start;
  }
  return k;
}

/* The English words at the end of text[0..end): the last one open, a verb asking for more,
 * digits being dictated, or a number asked about before its operator ("what is seven"). */
static enum turn_cue english_cue(const char *text, size_t end, int digits_asked) {
  char w[TAIL_WORDS][32], pair[64];
  int k = tail_words(text, end, w);
  if (!k) return TURN_DONE;
  if (in_list(open_words, w[0], strlen(w[0]))) return TURN_MORE;
  if (k >= 2) {
    snprintf(pair, sizeof pair, "%s %s", w[1], w[0]);
    if (in_list(open_pairs, pair, strlen(pair))) return TURN_MORE;
  }
  int numbers = 0, i = 0;
  for (; i < k && is_number_word(w[i], strlen(w[i])); i++)
    numbers += 1 + (strlen(w[i]) >= 4 && isdigit((unsigned char)w[i][0])); /* "4567" is a run too */
  if (numbers >= 2 || (numbers && digits_asked)) return TURN_MORE;
  int asked = i < k && (!strcmp(w[i], "what's") ||
                        (!strcmp(w[i], "is") && i + 1 < k && (!strcmp(w[i + 1], "what") ||
                                                              !strcmp(w[i + 1], "much"))));
  if (numbers && asked) return TURN_MORE;
  return TURN_DONE;
}

static int ends_with(const char *text, size_t end, const char *suffix) {
  size_t n = strlen(suffix);
  return n <= end && memcmp(text + end - n, suffix, n) == 0;
}

static enum turn_cue chinese_cue(const char *text, size_t end, int digits_asked) {
  for (int i = 0; open_suffixes_zh[i]; i++)
    if (ends_with(text, end, open_suffixes_zh[i])) return TURN_MORE;
  int numbers = 0;
  for (;;) {
    size_t n = end ? last_char_len(text, end) : 0;
    if (!n) break;
    int digit = (n == 1 && isdigit((unsigned char)text[end - 1])) || in_list(zh_digits, text + end - n, n);
    if (!digit) break;
    numbers++;
    end -= n;
  }
  if (numbers >= 2 || (numbers && digits_asked)) return TURN_MORE;
  return TURN_DONE;
}

enum turn_cue turn_text_cue(const char *text, const char *ai_last) {
  if (!text) return TURN_UNSURE;
  enum punct p;
  size_t end = trim_end(text, strlen(text), &p);
  if (!end) return TURN_UNSURE;
  int digits = ai_last && asked_for_digits(ai_last);
  enum turn_cue cue = (unsigned char)text[end - 1] >= 0x80 ? chinese_cue(text, end, digits)
                                                            : english_cue(text, end, digits);
  /* The words win over a service's full stop ("a table for."): transcribers close every
   * fragment they are sent; a comma, though, is a pause they heard as open. */
  if (cue == TURN_DONE && p == P_OPEN) return TURN_MORE;
  return cue;
}

/* --- pitch ---------------------------------------------------------------------------------- */

#define PITCH_MAX_FRAMES 50  /* a second of frames is more than a phrase's end needs */
#define PITCH_MIN_VOICED 5   /* voiced frames needed to tell a fall */
#define PITCH_FALL 0.93      /* the end's pitch below this share of the phrase's: a fall */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(const double *v, int n) {
  double tmp[PITCH_MAX_FRAMES];
  memcpy(tmp, v, (size_t)n * sizeof *v);
  qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
  return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

enum turn_pitch turn_pitch_trend(const float *hz, size_t n) {
  if (n > PITCH_MAX_FRAMES) hz += n - PITCH_MAX_FRAMES, n = PITCH_MAX_FRAMES;
  double f0[PITCH_MAX_FRAMES];
  int voiced = 0;
  for (size_t i = 0; i < n; i++)
    if (hz[i] > 0) f0[voiced++] = hz[i];
  if (voiced < PITCH_MIN_VOICED) return TURN_PITCH_UNKNOWN;
  /* An octave slip would read as a jump: keep what lies within a factor 1.5 of the median. */
  double mid = median(f0, voiced), kept[PITCH_MAX_FRAMES];
  int k = 0;
  for (int i = 0; i < voiced; i++)
    if (f0[i] < mid * 1.5 && f0[i] > mid / 1.5) kept[k++] = f0[i];
  if (k < PITCH_MIN_VOICED) return TURN_PITCH_UNKNOWN;
  int tail = k / 3 < 2 ? 2 : k / 3; /* the last syllable, against the phrase before it */
  double before = median(kept, k - tail), last = median(kept + k - tail, tail);
  return last < before * PITCH_FALL ? TURN_PITCH_FALL : TURN_PITCH_LEVEL;
}

enum turn_cue turn_cue_trusted(enum turn_cue cue, float last_word_conf) {
  if (cue == TURN_DONE && last_word_conf >= 0 && last_word_conf < TURN_TRUST_MIN) return TURN_MORE;
  return cue;
}

int turn_silence_ms(enum turn_cue cue, enum turn_pitch pitch, int min_ms, int max_ms) {
  if (min_ms > max_ms) min_ms = max_ms; /* endpoint_ms bounds every turn */
  switch (cue) {
  case TURN_DONE: return min_ms;
  case TURN_MORE: return max_ms;
  case TURN_UNSURE: break;
  }
  return pitch == TURN_PITCH_FALL ? min_ms + (max_ms - min_ms) / 4 : (min_ms + max_ms) / 2;
}

const char *turn_cue_name(enum turn_cue cue) {
  switch (cue) {
  case TURN_DONE: return "done";
  case TURN_MORE: return "more";
  case TURN_UNSURE: break;
  }
  return "unsure";
}
