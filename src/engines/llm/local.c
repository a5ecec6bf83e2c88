/*
 * The "local" LLM backend: a small rule-based assistant that works with no
 * model and no network, and says so.
 *
 * It reads only the caller's last turn, which usually comes from speech
 * recognition: lower case, no punctuation, numbers spelled out ("twelve
 * times seven"), or typed text with digits and symbols ("3+4"), in English
 * or Chinese ("三加四等于几"). The turn is cut into tokens (English words,
 * digit strings, operator symbols, single CJK characters), and the intents
 * are tried in a fixed order, the first match answering:
 *
 *   repeat after me > say that again > goodbye > arithmetic > time/date > help > thanks >
 *   greeting > an honest "no language model is configured".
 *
 * "Repeat after me" comes first because what follows it may be anything;
 * goodbye comes before the rest so "thanks, bye" ends the call. Answers are
 * in the call's language and written to be spoken: numbers, times and dates
 * in words ("twenty past three in the afternoon", "下午三点二十分"), since
 * that is what speech synthesis reads most naturally. The reply is streamed
 * as tokens (see canned.h).
 *
 * Answering takes well under a millisecond, but it is engine work, and the
 * thread that asks is a media worker: so the answer is computed on the
 * inference pool, from copies of the two turns it reads, and streamed home
 * from there. Opened without a pool (unit tests), it answers at once.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/pool.h"
#include "engines/llm/canned.h"

extern const struct llm_backend llm_local;

#define TURN_MAX 1000  /* bytes of the caller's turn that are read */
#define MAX_TOKENS 200
#define MAX_OPERANDS 8
#define MAX_REPEAT 400  /* bytes said back by "repeat after me" */
#define BIGGEST 1e15    /* results beyond this are not read out */

/* ---- the reply, built in a bounded buffer ---- */

struct reply {
  char s[2048];
  size_t n;
};

static void put(struct reply *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(r->s + r->n, sizeof r->s - r->n, fmt, ap);
  va_end(ap);
  if (k > 0) r->n += (size_t)k < sizeof r->s - r->n ? (size_t)k : sizeof r->s - r->n - 1;
}

/* ---- tokens ---- */

enum tok_kind { TK_WORD, TK_NUM, TK_OP, TK_CHAR };

struct tok {
  enum tok_kind kind;
  char text[24];  /* word (lower case), one UTF-8 character, or the digits */
  double val;     /* TK_NUM */
  char op;        /* TK_OP: + - * / */
};

struct input {
  const char *raw;  /* the caller's turn */
  struct tok t[MAX_TOKENS];
  int n;
};

static int is_ideograph(unsigned cp) {
  return cp == 0x3007 || (cp >= 0x3400 && cp <= 0x9FFF) || (cp >= 0xF900 && cp <= 0xFAFF);
}

static unsigned decode(const unsigned char *s, size_t *len) {
  if (s[0] < 0x80) return *len = 1, s[0];
  size_t k = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 1;
  unsigned cp = s[0] & (0x7F >> k);
  for (size_t i = 1; i < k; i++) {
    if ((s[i] & 0xC0) != 0x80) return *len = 1, 0xFFFD;
    cp = cp << 6 | (s[i] & 0x3F);
  }
  *len = k;
  return k == 1 ? 0xFFFD : cp;
}

static struct tok *add_tok(struct input *in, enum tok_kind kind) {
  if (in->n == MAX_TOKENS) return NULL;
  struct tok *t = &in->t[in->n++];
  memset(t, 0, sizeof *t);
  t->kind = kind;
  return t;
}

/* Digits, with "1,000" thousands separators and a decimal part. Returns bytes read. */
static size_t lex_number(struct input *in, const char *s) {
  char digits[24];
  size_t i = 0, d = 0;
  int dot = 0;
  while (s[i] && d < sizeof digits - 1) {
    if (isdigit((unsigned char)s[i])) digits[d++] = s[i++];
    else if (s[i] == ',' && !dot && isdigit((unsigned char)s[i + 1]) && isdigit((unsigned char)s[i + 2]) &&
             isdigit((unsigned char)s[i + 3]) && !isdigit((unsigned char)s[i + 4])) i++;
    else if (s[i] == '.' && !dot && isdigit((unsigned char)s[i + 1])) dot = 1, digits[d++] = s[i++];
    else break;
  }
  while (isdigit((unsigned char)s[i])) i++; /* absurdly long: the rest is dropped */
  digits[d] = 0;
  struct tok *t = add_tok(in, TK_NUM);
  if (t) {
    t->val = strtod(digits, NULL);
    snprintf(t->text, sizeof t->text, "%s", digits);
  }
  return i;
}

static size_t lex_word(struct input *in, const char *s) {
  struct tok *t = add_tok(in, TK_WORD);
  size_t i = 0, w = 0;
  for (; isalpha((unsigned char)s[i]) || s[i] == '\''; i++)
    if (t && s[i] != '\'' && w < sizeof t->text - 1) t->text[w++] = (char)tolower((unsigned char)s[i]);
  return i;
}

static void lex(struct input *in, const char *text) {
  in->raw = text;
  in->n = 0;
  size_t len = strnlen(text, TURN_MAX);
  for (size_t i = 0; i < len;) {
    const unsigned char *u = (const unsigned char *)text + i;
    size_t n;
    unsigned cp = decode(u, &n);
    if (i + n > len) break;
    if (isdigit(u[0])) {
      n = lex_number(in, text + i);
    } else if (isalpha(u[0])) {
      n = lex_word(in, text + i);
    } else if ((cp < 0x80 && strchr("+-*/", (int)cp)) || cp == 0xD7 || cp == 0xF7 || cp == 0xFF0B) {
      struct tok *t = add_tok(in, TK_OP);
      if (t) t->op = cp == 0xD7 ? '*' : cp == 0xF7 ? '/' : cp == 0xFF0B ? '+' : (char)cp;
    } else if (is_ideograph(cp)) {
      struct tok *t = add_tok(in, TK_CHAR);
      if (t) memcpy(t->text, u, n);
    }
    i += n;
  }
}

static int word_is(const struct input *in, int i, const char *w) {
  return i >= 0 && i < in->n && in->t[i].kind == TK_WORD && strcmp(in->t[i].text, w) == 0;
}

static int char_is(const struct input *in, int i, const char *c) {
  return i >= 0 && i < in->n && in->t[i].kind == TK_CHAR && strcmp(in->t[i].text, c) == 0;
}

/* The words of `phrase` (space-separated) appear in a row. */
static int has_phrase(const struct input *in, const char *phrase) {
  char words[8][24];
  int nw = 0;
  for (const char *p = phrase; *p && nw < 8;) {
    size_t k = strcspn(p, " ");
    snprintf(words[nw++], sizeof words[0], "%.*s", (int)k, p);
    p += k + (p[k] == ' ');
  }
  for (int i = 0; i + nw <= in->n; i++) {
    int j = 0;
    while (j < nw && word_is(in, i + j, words[j])) j++;
    if (j == nw) return 1;
  }
  return 0;
}

/* Any of the '|'-separated English phrases, or any of the Chinese substrings. */
static int matches(const struct input *in, const char *en, const char *zh) {
  char buf[64];
  for (const char *p = en; p && *p;) {
    size_t k = strcspn(p, "|");
    snprintf(buf, sizeof buf, "%.*s", (int)k, p);
    if (has_phrase(in, buf)) return 1;
    p += k + (p[k] == '|');
  }
  for (const char *p = zh; p && *p;) {
    size_t k = strcspn(p, "|");
    snprintf(buf, sizeof buf, "%.*s", (int)k, p);
    if (strstr(in->raw, buf)) return 1;
    p += k + (p[k] == '|');
  }
  return 0;
}

/* ---- numbers, heard ---- */

static const char *const ones_en[] = {"zero", "one", "two", "three", "four", "five", "six",
                                      "seven", "eight", "nine", "ten", "eleven", "twelve",
                                      "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                                      "eighteen", "nineteen"};
static const char *const tens_en[] = {"", "", "twenty", "thirty", "forty", "fifty", "sixty",
                                      "seventy", "eighty", "ninety"};
static const char *const digits_zh[] = {"零", "一", "二", "三", "四", "五", "六", "七", "八", "九"};

static int lookup(const char *w, const char *const *list, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(w, list[i]) == 0) return i;
  return -1;
}

static double scale_word(const char *w) {
  if (!strcmp(w, "thousand")) return 1e3;
  if (!strcmp(w, "million")) return 1e6;
  if (!strcmp(w, "billion")) return 1e9;
  return 0;
}

static int unit_word_at(const struct input *in, int i) {
  if (i < in->n && in->t[i].kind == TK_WORD) {
    int v = lookup(in->t[i].text, ones_en, 10);
    if (v >= 0) return v;
    if (!strcmp(in->t[i].text, "oh")) return 0;
  }
  return -1;
}

static int number_word_at(const struct input *in, int i) {
  return i < in->n && in->t[i].kind == TK_WORD &&
         (lookup(in->t[i].text, ones_en, 20) >= 0 || lookup(in->t[i].text, tens_en, 10) >= 2);
}

/* "point one four" or "point 14" after a number; returns tokens read. */
static int read_fraction(const struct input *in, int i, double *frac) {
  if (i < in->n && in->t[i].kind == TK_NUM && !strchr(in->t[i].text, '.')) {
    *frac = in->t[i].val / pow(10, (double)strlen(in->t[i].text));
    return 1;
  }
  int k = 0;
  double place = 0.1;
  *frac = 0;
  for (int d; (d = unit_word_at(in, i + k)) >= 0 && k < 6; k++, place /= 10) *frac += d * place;
  return k;
}

enum last { L_NONE, L_UNIT, L_TEEN, L_TENS, L_HUNDRED, L_SCALE, L_DIGITS };

/* English number words (with digits allowed as the first token). Returns tokens read. */
static int read_english(const struct input *in, int i0, double *out) {
  double total = 0, cur = 0;
  enum last last = L_NONE;
  int i = i0;
  for (; i < in->n; i++) {
    const struct tok *t = &in->t[i];
    if (t->kind == TK_NUM) {
      if (last != L_NONE) break;
      cur = t->val, last = L_DIGITS;
      continue;
    }
    if (t->kind != TK_WORD) break;
    const char *w = t->text;
    int v;
    int open = last == L_NONE || last == L_HUNDRED || last == L_SCALE;
    if ((v = lookup(w, ones_en, 20)) >= 0 && (open || (last == L_TENS && v < 10 && v > 0))) {
      cur += v, last = v < 10 ? L_UNIT : L_TEEN;
    } else if ((v = lookup(w, tens_en, 10)) >= 2 && open) {
      cur += v * 10, last = L_TENS;
    } else if (!strcmp(w, "hundred") && last != L_NONE && last != L_HUNDRED && fmod(cur, 1000) < 100) {
      cur = (cur - fmod(cur, 100)) + (fmod(cur, 100) ? fmod(cur, 100) : 1) * 100, last = L_HUNDRED;
    } else if (scale_word(w) > 0 && last != L_NONE && last != L_SCALE) {
      total += (cur ? cur : 1) * scale_word(w), cur = 0, last = L_SCALE;
    } else if ((!strcmp(w, "a") || !strcmp(w, "an")) && last == L_NONE && i + 1 < in->n &&
               in->t[i + 1].kind == TK_WORD &&
               (!strcmp(in->t[i + 1].text, "hundred") || scale_word(in->t[i + 1].text) > 0)) {
      cur = 1, last = L_UNIT;
    } else if (!strcmp(w, "and") && (last == L_HUNDRED || last == L_SCALE) && number_word_at(in, i + 1)) {
      continue;
    } else if (!strcmp(w, "point") && last != L_NONE && last != L_DIGITS) {
      double frac;
      int k = read_fraction(in, i + 1, &frac);
      if (k) {
        cur += frac;
        i += 1 + k;
      }
      break;
    } else {
      break;
    }
  }
  *out = total + cur;
  return i - i0;
}

static int zh_digit(const char *c) {
  if (!strcmp(c, "两") || !strcmp(c, "二")) return 2;
  if (!strcmp(c, "〇")) return 0;
  for (int d = 0; d < 10; d++)
    if (!strcmp(c, digits_zh[d])) return d;
  return -1;
}

static int zh_unit(const char *c) {
  return !strcmp(c, "十") ? 10 : !strcmp(c, "百") ? 100 : !strcmp(c, "千") ? 1000 : !strcmp(c, "万") ? 10000
       : !strcmp(c, "亿") ? 100000000 : 0;
}

/*
 * Chinese numerals: 十二, 一百零五, 三万二千, 两百五 (250, the spoken
 * short form), or a plain digit string such as 二零二四. Returns tokens read.
 */
static int read_chinese(const struct input *in, int i0, double *out) {
  int i = i0, units = 0;
  while (i < in->n && in->t[i].kind == TK_CHAR && (zh_digit(in->t[i].text) >= 0 || zh_unit(in->t[i].text))) {
    units += zh_unit(in->t[i].text) > 0;
    i++;
  }
  if (i == i0) return 0;
  double total = 0, section = 0;
  int pend = -1, last_unit = 0, after_unit = 0;
  for (int k = i0; k < i; k++) {
    const char *c = in->t[k].text;
    int d = zh_digit(c), u = zh_unit(c);
    if (!units) {
      total = total * 10 + d;
    } else if (d >= 0) {
      after_unit = d > 0 && k > i0 && zh_unit(in->t[k - 1].text) > 0;
      pend = d;
    } else if (u < 10000) {
      section += (pend < 0 ? 1 : pend) * u, pend = -1, last_unit = u;
    } else {
      section += pend > 0 ? pend : 0;
      total = (total + section) * u, section = 0, pend = -1, last_unit = 0;
    }
  }
  if (pend > 0) section += after_unit && last_unit >= 100 ? pend * last_unit / 10 : pend;
  *out = total + section;
  if (char_is(in, i, "点") && i + 1 < in->n && in->t[i + 1].kind == TK_CHAR && zh_digit(in->t[i + 1].text) >= 0) {
    double place = 0.1;
    for (i++; i < in->n && in->t[i].kind == TK_CHAR && zh_digit(in->t[i].text) >= 0; i++, place /= 10)
      *out += zh_digit(in->t[i].text) * place;
  }
  return i - i0;
}

static int read_number(const struct input *in, int i, double *v) {
  if (i >= in->n) return 0;
  if (in->t[i].kind == TK_CHAR) return read_chinese(in, i, v);
  return read_english(in, i, v);
}

/* An operator at i: returns tokens read, the operator in *op. */
static int read_op(const struct input *in, int i, char *op) {
  if (i >= in->n) return 0;
  const struct tok *t = &in->t[i];
  if (t->kind == TK_OP) return *op = t->op, 1;
  if (word_is(in, i, "plus")) return *op = '+', 1;
  if (word_is(in, i, "minus")) return *op = '-', 1;
  if (word_is(in, i, "times") || word_is(in, i, "x")) return *op = '*', 1;
  if (word_is(in, i, "multiplied") || word_is(in, i, "divided")) {
    *op = t->text[0] == 'm' ? '*' : '/';
    return 1 + word_is(in, i + 1, "by");
  }
  if (word_is(in, i, "over")) return *op = '/', 1;
  if (char_is(in, i, "加")) return *op = '+', 1 + char_is(in, i + 1, "上");
  if (char_is(in, i, "减")) return *op = '-', 1 + char_is(in, i + 1, "去");
  if (char_is(in, i, "乘")) return *op = '*', 1 + (char_is(in, i + 1, "以") || char_is(in, i + 1, "上"));
  if (char_is(in, i, "除")) return *op = '/', 1 + char_is(in, i + 1, "以");
  return 0;
}

/* An operand: an optional sign word, then a number. Returns tokens read. */
static int read_operand(const struct input *in, int i, double *v) {
  int sign = 0;
  if (word_is(in, i, "minus") || word_is(in, i, "negative") || char_is(in, i, "负") ||
      (i < in->n && in->t[i].kind == TK_OP && in->t[i].op == '-'))
    sign = 1;
  int k = read_number(in, i + sign, v);
  if (!k) return 0;
  if (sign) *v = -*v;
  return k + sign;
}

struct sum {
  double v[MAX_OPERANDS];
  char op[MAX_OPERANDS];
  int n;  /* operands */
};

/* The first "number (operator number)+" in the turn. */
static int find_sum(const struct input *in, struct sum *s) {
  for (int start = 0; start < in->n; start++) {
    int i = start, k;
    s->n = 0;
    if (!(k = read_operand(in, i, &s->v[0]))) continue;
    i += k, s->n = 1;
    while (s->n < MAX_OPERANDS) {
      char op;
      int ko = read_op(in, i, &op), kv;
      if (!ko || !(kv = read_operand(in, i + ko, &s->v[s->n]))) break;
      s->op[s->n - 1] = op;
      s->n++, i += ko + kv;
    }
    if (s->n > 1) return 1;
  }
  return 0;
}

/* Times and divisions first, then left to right. Returns -1 on division by zero. */
static int evaluate(const struct sum *s, double *result) {
  double terms[MAX_OPERANDS];
  char signs[MAX_OPERANDS];
  int nt = 0;
  terms[0] = s->v[0], signs[0] = '+', nt = 1;
  for (int i = 1; i < s->n; i++) {
    char op = s->op[i - 1];
    if (op == '*') terms[nt - 1] *= s->v[i];
    else if (op == '/') {
      if (s->v[i] == 0) return -1;
      terms[nt - 1] /= s->v[i];
    } else {
      signs[nt] = op, terms[nt++] = s->v[i];
    }
  }
  *result = 0;
  for (int i = 0; i < nt; i++) *result += signs[i] == '-' ? -terms[i] : terms[i];
  return 0;
}

/* ---- numbers, spoken ---- */

static void say_below_1000_en(struct reply *r, int n) {
  if (n >= 100) {
    put(r, "%s hundred", ones_en[n / 100]);
    if (!(n %= 100)) return;
    put(r, " ");
  }
  if (n < 20) put(r, "%s", ones_en[n]);
  else if (n % 10) put(r, "%s-%s", tens_en[n / 10], ones_en[n % 10]);
  else put(r, "%s", tens_en[n / 10]);
}

static void say_int_en(struct reply *r, long long n) {
  static const char *const scales[] = {"trillion", "billion", "million", "thousand", ""};
  static const long long sizes[] = {1000000000000LL, 1000000000LL, 1000000LL, 1000LL, 1LL};
  if (n == 0) {
    put(r, "zero");
    return;
  }
  int first = 1;
  for (int i = 0; i < 5; i++) {
    int part = (int)(n / sizes[i]);
    n %= sizes[i];
    if (!part) continue;
    if (!first) put(r, " ");
    say_below_1000_en(r, part);
    if (*scales[i]) put(r, " %s", scales[i]);
    first = 0;
  }
}

/* 1..9999; zeros inside become one 零; `first`: the number's first group, so 十二 not 一十二. */
static void say_section_zh(struct reply *r, int n, int first) {
  static const char *const units[] = {"千", "百", "十", ""};
  static const int sizes[] = {1000, 100, 10, 1};
  int zero = 0, said = 0;
  for (int i = 0; i < 4; i++) {
    int d = n / sizes[i] % 10;
    if (!d) {
      zero = said;
      continue;
    }
    if (zero) put(r, "零");
    zero = 0;
    if (!(d == 1 && i == 2 && first && !said)) put(r, "%s", digits_zh[d]);
    put(r, "%s", units[i]);
    said = 1;
  }
}

/* Groups of four digits: 万 after the second, 亿 after the third, 万 (亿) after the fourth. */
static void say_int_zh(struct reply *r, long long n) {
  static const char *const units[] = {"", "万", "亿", "万"};
  int g[4];
  for (int k = 0; k < 4; k++, n /= 10000) g[k] = (int)(n % 10000);
  if (!g[0] && !g[1] && !g[2] && !g[3]) {
    put(r, "零");
    return;
  }
  int said = 0, gap = 0;
  for (int k = 3; k >= 0; k--) {
    if (!g[k]) {
      gap = said;
      if (k == 2 && g[3]) put(r, "亿");
      continue;
    }
    if (said && (gap || g[k] < 1000)) put(r, "零");
    say_section_zh(r, g[k], !said);
    put(r, "%s", units[k]);
    if (k == 3 && !g[2]) continue;
    said = 1, gap = 0;
  }
}

/* 1 if v needs rounding to `places` decimals. */
static int inexact(double v, int places) {
  double k = pow(10, places);
  return fabs(round(v * k) / k - v) > 1e-9;
}

/* A number in words, rounded to `places` (at most 6) decimals. */
static void say_number(struct reply *r, double v, int zh, int places) {
  double k = pow(10, places);
  double rounded = round(v * k) / k;
  if (rounded < 0) put(r, zh ? "负" : "negative ");
  rounded = fabs(rounded);
  long long whole = (long long)rounded;
  if (zh) say_int_zh(r, whole);
  else say_int_en(r, whole);
  long long frac = llround((rounded - (double)whole) * k);
  if (!frac) return;
  put(r, zh ? "点" : " point");
  char d[8];
  snprintf(d, sizeof d, "%0*lld", places, frac);
  size_t n = strlen(d);
  while (n && d[n - 1] == '0') n--;
  for (size_t i = 0; i < n; i++) put(r, zh ? "%s" : " %s", zh ? digits_zh[d[i] - '0'] : ones_en[d[i] - '0']);
}

/* ---- answers ---- */

static void answer_sum(struct reply *r, const struct sum *s, int zh) {
  static const char *const op_en[] = {"plus", "minus", "times", "divided by"};
  static const char *const op_zh[] = {"加", "减", "乘以", "除以"};
  double result;
  if (evaluate(s, &result)) {
    put(r, zh ? "不能除以零哦。" : "Dividing by zero has no answer, I'm afraid.");
    return;
  }
  if (fabs(result) >= BIGGEST || !isfinite(result)) {
    put(r, zh ? "这个数太大了，我念不出来。" : "That number is too big for me to say.");
    return;
  }
  size_t start = r->n;
  for (int i = 0; i < s->n; i++) {
    if (i) {
      int k = (int)(strchr("+-*/", s->op[i - 1]) - "+-*/");
      put(r, zh ? "%s" : " %s ", zh ? op_zh[k] : op_en[k]);
    }
    say_number(r, s->v[i], zh, 6);
  }
  int about = inexact(result, 3);
  put(r, zh ? (about ? "约等于" : "等于") : (about ? " is about " : " is "));
  say_number(r, result, zh, 3);
  put(r, zh ? "。" : ".");
  if (!zh) r->s[start] = (char)toupper((unsigned char)r->s[start]);
}

static const char *period_en(int hour24) {
  if (hour24 >= 5 && hour24 < 12) return "in the morning";
  if (hour24 >= 12 && hour24 < 18) return "in the afternoon";
  if (hour24 >= 18 && hour24 < 22) return "in the evening";
  return "at night";
}

static void answer_time_en(struct reply *r, const struct tm *tm) {
  int h = tm->tm_hour, m = tm->tm_min;
  int next = (h + 1) % 24;
  const char *h12 = ones_en[h % 12 ? h % 12 : 12], *n12 = ones_en[next % 12 ? next % 12 : 12];
  if (m == 0 && (h == 0 || h == 12)) {
    put(r, "It's twelve %s.", h ? "noon" : "midnight");
    return;
  }
  put(r, "It's ");
  if (m == 0) put(r, "%s o'clock", h12);
  else if (m == 15) put(r, "quarter past %s", h12);
  else if (m == 30) put(r, "half past %s", h12);
  else if (m == 45) put(r, "quarter to %s", n12);
  else if (m % 5 == 0 && m < 30) put(r, "%s past %s", m == 20 ? "twenty" : m == 25 ? "twenty-five" : ones_en[m], h12);
  else if (m % 5 == 0) put(r, "%s to %s", 60 - m == 20 ? "twenty" : 60 - m == 25 ? "twenty-five" : ones_en[60 - m], n12);
  else {
    put(r, "%s %s", h12, m < 10 ? "oh " : "");
    say_below_1000_en(r, m);
  }
  put(r, " %s.", period_en(m > 30 && m % 5 == 0 ? next : h));
}

static void say_ordinal_en(struct reply *r, int n) {
  static const char *const ord[] = {"", "first", "second", "third", "fourth", "fifth", "sixth",
                                    "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth",
                                    "thirteenth", "fourteenth", "fifteenth", "sixteenth",
                                    "seventeenth", "eighteenth", "nineteenth"};
  if (n < 20) put(r, "%s", ord[n]);
  else if (n % 10) put(r, "%s-%s", tens_en[n / 10], ord[n % 10]);
  else put(r, "%.*sieth", (int)strlen(tens_en[n / 10]) - 1, tens_en[n / 10]);
}

static void say_year_en(struct reply *r, int y) {
  if (y >= 2000 && y < 2010) {
    put(r, "two thousand");
    if (y % 10) put(r, " %s", ones_en[y % 10]);
    return;
  }
  say_below_1000_en(r, y / 100);
  if (y % 100 == 0) put(r, " hundred");
  else if (y % 100 < 10) put(r, " oh %s", ones_en[y % 100]);
  else {
    put(r, " ");
    say_below_1000_en(r, y % 100);
  }
}

static void answer_date_en(struct reply *r, const struct tm *tm) {
  static const char *const days[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday",
                                     "Friday", "Saturday"};
  static const char *const months[] = {"January", "February", "March", "April", "May", "June",
                                       "July", "August", "September", "October", "November",
                                       "December"};
  put(r, "Today is %s, %s the ", days[tm->tm_wday], months[tm->tm_mon]);
  say_ordinal_en(r, tm->tm_mday);
  put(r, ", ");
  say_year_en(r, tm->tm_year + 1900);
  put(r, ".");
}

static void answer_time_zh(struct reply *r, const struct tm *tm) {
  int h = tm->tm_hour, m = tm->tm_min;
  const char *period = h < 6 ? "凌晨" : h < 9 ? "早上" : h < 12 ? "上午" : h < 13 ? "中午" : h < 18 ? "下午" : "晚上";
  int h12 = h == 0 ? 0 : h % 12 ? h % 12 : 12; /* 零点: midnight */
  put(r, "现在是%s", period);
  if (h12 == 2) put(r, "两");
  else say_int_zh(r, h12);
  put(r, "点");
  if (m == 0) put(r, "整");
  else if (m == 30) put(r, "半");
  else {
    if (m < 10) put(r, "零");
    say_int_zh(r, m);
    put(r, "分");
  }
  put(r, "。");
}

static void answer_date_zh(struct reply *r, const struct tm *tm) {
  static const char *const days[] = {"日", "一", "二", "三", "四", "五", "六"};
  char year[8];
  snprintf(year, sizeof year, "%d", (tm->tm_year + 1900) % 10000);
  put(r, "今天是");
  for (const char *p = year; *p; p++) put(r, "%s", digits_zh[*p - '0']);
  put(r, "年");
  say_int_zh(r, tm->tm_mon + 1);
  put(r, "月");
  say_int_zh(r, tm->tm_mday);
  put(r, "日，星期%s。", days[tm->tm_wday]);
}

static void answer_when(struct reply *r, const struct tm *tm, int say_time, int say_date, int zh) {
  if (say_time && zh) answer_time_zh(r, tm);
  if (say_time && !zh) answer_time_en(r, tm);
  if (say_time && say_date && !zh) put(r, " ");
  if (say_date && zh) answer_date_zh(r, tm);
  if (say_date && !zh) answer_date_en(r, tm);
}

/* Where the words after "repeat after me" start; NULL if the turn has no such request. */
static const char *repeat_request(const char *raw) {
  static const char *const cues[] = {"repeat after me", "say after me", "跟我说", "跟我念", "跟我读", NULL};
  size_t len = strnlen(raw, TURN_MAX);
  for (int c = 0; cues[c]; c++) {
    size_t k = strlen(cues[c]);
    for (size_t i = 0; i + k <= len; i++)
      if (strncasecmp(raw + i, cues[c], k) == 0) return raw + i + k;
  }
  return NULL;
}

static void answer_repeat(struct reply *r, const char *rest, int zh) {
  static const char *const skip[] = {" ", "\t", ":", ",", ".", "：", "，", "。", "\"", "“", "”", NULL};
  for (int again = 1; again;) {
    again = 0;
    for (int i = 0; skip[i]; i++)
      if (!strncmp(rest, skip[i], strlen(skip[i]))) rest += strlen(skip[i]), again = 1;
  }
  size_t n = strnlen(rest, MAX_REPEAT);
  while (n && (rest[n - 1] == ' ' || rest[n - 1] == '"' || rest[n - 1] == '\n')) n--;
  if (n < strlen(rest)) /* cut at a character boundary */
    while (n && ((unsigned char)rest[n] & 0xC0) == 0x80) n--;
  if (!n) {
    put(r, zh ? "好的。请说“跟我说”，再说要我重复的话。" : "Sure. Say repeat after me, and then the words you want to hear.");
    return;
  }
  put(r, "%.*s", (int)n, rest);
}

/* The previous reply again, without a note that it was interrupted ("... [interrupted]"). */
static void answer_again(struct reply *r, const char *previous, int zh) {
  if (!previous || !*previous) {
    put(r, zh ? "我还什么都没说呢。" : "I haven't said anything yet.");
    return;
  }
  size_t n = strlen(previous);
  const char *note = n && previous[n - 1] == ']' ? strrchr(previous, '[') : NULL;
  if (note) n = (size_t)(note - previous);
  while (n && previous[n - 1] == ' ') n--;
  put(r, "%.*s", (int)n, previous);
}

/* Builds the answer to `turn`; `previous` is the last reply, if any. Returns 1 if it ends the call. */
static int answer(struct reply *r, const char *turn, const char *previous, int zh, time_t now) {
  struct input *ip = malloc(sizeof *ip);
  if (!ip) {
    put(r, zh ? "抱歉，出错了。" : "Sorry, something went wrong.");
    return 0;
  }
  lex(ip, turn);
  struct tm tm;
  localtime_r(&now, &tm);
  struct sum s;
  const char *rest = repeat_request(turn);
  int hangup = 0;
  int asked_time = matches(ip, "time|what hour|oclock", "几点|时间|钟点");
  int asked_date = matches(ip, "date|what day|which day|day is it|day today|day is today|month|year|weekday",
                           "日期|几号|星期几|礼拜几|周几|几月|哪天|哪一天|哪年|什么日子");
  if (rest) {
    answer_repeat(r, rest, zh);
  } else if (matches(ip, "say that again|say it again|repeat that|repeat it|what did you say|come again|pardon",
                     "再说一遍|再说一次|重复一遍|你说什么")) {
    answer_again(r, previous, zh);
  } else if (matches(ip, "goodbye|good bye|bye|hang up|see you|farewell|end the call|end call",
                     "再见|拜拜|挂了|挂断|挂电话|回头见")) {
    put(r, zh ? "再见，祝你愉快！" : "Goodbye, and have a nice day!");
    hangup = 1;
  } else if (find_sum(ip, &s)) {
    answer_sum(r, &s, zh);
  } else if (asked_time || asked_date) {
    answer_when(r, &tm, asked_time, asked_date, zh);
  } else if (matches(ip, "help|what can you do|what can i say|what do you do|how does this work",
                     "帮助|帮忙|你能做什么|你会什么|你可以做什么|能干什么|怎么用|功能")) {
    put(r, zh ? "你可以问我现在几点、今天几号。我会算加减乘除，比如“三加四等于几”。说“跟我说”再加上一句话，我就重复给你听。说“再见”就挂断。"
              : "You can ask me the time or today's date. I can do sums, like twelve times seven. "
                "Say repeat after me, then some words, and I'll say them back. Say goodbye to hang up.");
  } else if (matches(ip, "thank you|thanks|thank|cheers", "谢谢|多谢|感谢")) {
    put(r, zh ? "不客气！还需要什么吗？" : "You're welcome! Anything else?");
  } else if (matches(ip, "hello|hi|hey|hiya|howdy|good morning|good afternoon|good evening|how are you",
                     "你好|您好|嗨|哈喽|早上好|下午好|晚上好|喂")) {
    put(r, zh ? "你好！我是一个离线的简单助手，可以告诉你时间和日期、做算术，或者重复你说的话。"
              : "Hello! I'm a simple offline assistant. I can tell you the time and the date, do sums, "
                "and repeat after you.");
  } else if (ip->n == 0) {
    put(r, zh ? "抱歉，我没听清。" : "Sorry, I didn't catch that.");
  } else {
    put(r, zh ? "我现在没有接入语言模型，只能报时间和日期、做简单的算术和重复你的话。"
                "想自由聊天的话，请在服务器配置里把 llm 设为 openai 或 anthropic。"
              : "I'm running without a language model, so I can only tell the time and date, do "
                "simple sums and repeat things. To talk about anything, set llm to openai or "
                "anthropic in the server's configuration.");
  }
  free(ip);
  return hangup;
}

/* ---- the backend ---- */

/* A reply being computed on the pool: what answer() reads, copied. */
struct local_job {
  struct llm_job llm; /* first: the eng_job is at offset 0 */
  char *turn, *previous; /* previous may be NULL */
  int zh;
  time_t now;
};

static void local_job_destroy(struct eng_job *j) {
  struct local_job *l = (struct local_job *)j;
  free(l->turn);
  free(l->previous);
  free(l);
}

static void deliver_error(struct eng_job *j, void *arg) {
  struct llm_job *l = (struct llm_job *)j;
  l->cb.error(l->cb.user, arg);
}

/* Pool thread. Reads only the copies; the callbacks are read at home, on delivery. */
static void compute(void *arg) {
  struct local_job *l = arg;
  if (!eng_job_cancelled(&l->llm.job)) {
    struct reply r = {.n = 0};
    r.s[0] = 0;
    int hangup = answer(&r, l->turn, l->previous, l->zh, l->now);
    if (canned_post(&l->llm, r.s, hangup) != 0) {
      char *msg = strdup("out of memory");
      if (msg) eng_job_post(&l->llm.job, deliver_error, msg);
    }
  }
  eng_job_unref(&l->llm.job); /* the pool item's */
}

static void compute_dropped(void *arg) { eng_job_unref(&((struct local_job *)arg)->llm.job); }

/* The engine is the inference pool, or NULL. */
static int local_open(void **engine, const struct engine_env *env, char *err, size_t errlen) {
  *engine = env ? env->pool : NULL; /* nothing to load */
  return 0;
}

static void local_close(void *engine) {}

static int generate_on_pool(struct pool *pool, const char *turn, const char *previous, int zh,
                            struct mailbox *home, const struct llm_cb *cb, struct llm_job **out) {
  struct local_job *l = calloc(1, sizeof *l);
  if (!l) return -ENOMEM;
  eng_job_init(&l->llm.job, home, local_job_destroy);
  l->llm.be = &llm_local;
  l->llm.cb = *cb;
  l->zh = zh;
  l->now = time(NULL);
  l->turn = strdup(turn);
  l->previous = previous ? strdup(previous) : NULL;
  int rc = !l->turn || (previous && !l->previous) ? -ENOMEM : 0;
  if (rc == 0) {
    eng_job_ref(&l->llm.job);
    rc = pool_submit(pool, compute, compute_dropped, l);
    if (rc) eng_job_unref(&l->llm.job);
  }
  if (rc) {
    eng_job_release(&l->llm.job);
    return rc;
  }
  *out = &l->llm;
  return 0;
}

static int local_generate(void *engine, const struct llm_params *p, struct mailbox *home,
                          const struct llm_cb *cb, struct llm_job **out) {
  const char *turn = "", *previous = NULL;
  for (size_t i = p->nturns; i-- > 0;) {
    const struct llm_turn *t = &p->turns[i];
    if (!t->text) continue;
    if (!*turn && t->role == LLM_USER) turn = t->text;
    else if (*turn && t->role == LLM_ASSISTANT) {
      previous = t->text;
      break;
    }
  }
  int zh = p->language && strncmp(p->language, "zh", 2) == 0;
  if (engine) return generate_on_pool(engine, turn, previous, zh, home, cb, out);
  struct reply r = {.n = 0};
  r.s[0] = 0;
  int hangup = answer(&r, turn, previous, zh, time(NULL));
  return canned_reply(&llm_local, r.s, hangup, home, cb, out);
}

const struct llm_backend llm_local = {
    .name = "local",
    .open = local_open,
    .close = local_close,
    .generate = local_generate,
};
