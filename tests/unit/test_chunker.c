/* chunker: sentences out of streamed text, the same whatever the split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/chunker.h"

/* Sentences joined with '|'. */
struct out {
  char s[8192];
  int n;
};

static int valid_utf8(const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  while (*u) {
    int k = *u < 0x80 ? 0 : (*u & 0xE0) == 0xC0 ? 1 : (*u & 0xF0) == 0xE0 ? 2 : (*u & 0xF8) == 0xF0 ? 3 : -1;
    if (k < 0) return 0;
    u++;
    for (int i = 0; i < k; i++, u++)
      if ((*u & 0xC0) != 0x80) return 0;
  }
  return 1;
}

static void collect(void *user, const char *sentence) {
  struct out *o = user;
  assert_true(sentence[0] != 0);
  assert_true(valid_utf8(sentence));
  assert_true(strlen(o->s) + strlen(sentence) + 2 < sizeof o->s);
  if (o->n++) strcat(o->s, "|");
  strcat(o->s, sentence);
}

/* Pushes text cut at the given offsets (ascending), then flushes. */
static void run_split(struct chunker *c, const char *text, const size_t *cuts, int ncuts, struct out *o) {
  memset(o, 0, sizeof *o);
  size_t len = strlen(text), at = 0;
  char *part = malloc(len + 1);
  for (int i = 0; i <= ncuts; i++) {
    size_t end = i < ncuts ? cuts[i] : len;
    memcpy(part, text + at, end - at);
    part[end - at] = 0;
    chunker_push(c, part, collect, o);
    at = end;
  }
  chunker_flush(c, collect, o);
  free(part);
}

static void chunk(const char *text, struct out *o) {
  struct chunker *c;
  assert_int_equal(chunker_new(&c), 0);
  run_split(c, text, NULL, 0, o);
  chunker_free(c);
}

/* The sentences of `text`, pushed whole; and every one- and two-cut split, and byte by byte, agree. */
static void check(const char *text, const char *expect) {
  struct chunker *c;
  assert_int_equal(chunker_new(&c), 0);
  struct out whole, split;
  run_split(c, text, NULL, 0, &whole);
  if (strcmp(whole.s, expect)) fail_msg("\"%s\"\n  got      \"%s\"\n  expected \"%s\"", text, whole.s, expect);
  size_t len = strlen(text);
  for (size_t i = 0; i <= len; i++) {
    for (size_t j = i; j <= len; j++) {
      size_t cuts[2] = {i, j};
      run_split(c, text, cuts, 2, &split);
      if (strcmp(split.s, whole.s)) fail_msg("cut at %zu,%zu: \"%s\" vs \"%s\"", i, j, split.s, whole.s);
    }
  }
  size_t *every = malloc(len * sizeof *every);
  for (size_t i = 0; i < len; i++) every[i] = i + 1;
  run_split(c, text, every, (int)len, &split);
  assert_string_equal(split.s, whole.s);
  free(every);
  chunker_free(c);
}

static void english_sentences(void **state) {
  check("Hello there, how are you today? I am fine. Thanks!",
        "Hello there, how are you today?|I am fine.|Thanks!");
  check("Wait; there is more! Really?! Yes.", "Wait; there is more!|Really?!|Yes.");
  check("He said \"stop.\" Then he left.", "He said \"stop.\"|Then he left.");
  check("Well... I think so. Yes.", "Well... I think so.|Yes.");
  check("The first line\nSecond line\n\n  Third  line  ", "The first line|Second line|Third line");
}

static void abbreviations_and_decimals(void **state) {
  check("Dr. Smith met Mr. Jones at 3.30 p.m. today. He paid $4.50 for coffee, e.g. a latte. Fine.",
        "Dr. Smith met Mr. Jones at 3.30 p.m. today.|He paid $4.50 for coffee, e.g. a latte.|Fine.");
  check("Pi is 3.14159 and e is 2.718. Done now.", "Pi is 3.14159 and e is 2.718.|Done now.");
  check("I live in the U.S. It is big, etc. And that is all.",
        "I live in the U.S.|It is big, etc.|And that is all.");
  check("Version 2.0.1 works. Ask J. R. R. Tolkien.", "Version 2.0.1 works.|Ask J. R. R. Tolkien.");
  check("It costs 5. Then 6.", "It costs 5. Then 6.");  /* short first piece joined */
}

static void chinese_sentences(void **state) {
  check("你好。今天天气很好！我们去公园吧？好的；走吧", "你好。今天天气很好！|我们去公园吧？|好的；|走吧");
  check("他说：“好。”然后走了。现在三点半。", "他说：“好。”|然后走了。|现在三点半。");
  check("圆周率是3.14。对吗？", "圆周率是3.14。|对吗？");
}

static void mixed_languages(void **state) {
  check("我叫Tom. Nice to meet you!你呢？", "我叫Tom. Nice to meet you!|你呢？");
  check("The word is 你好. It means hello.", "The word is 你好.|It means hello.");
}

static void markdown_is_dropped(void **state) {
  check("## Getting started today\n**Bold** text and `code`.\n- item one\n* item two\n"
        "1. first step\n2) second step\n> quoted\n---\n• last bullet\n",
        "Getting started today|Bold text and code.|item one|item two|first step|second step|quoted|last bullet");
  check("3.14 is pi, more or less.\n-5 degrees outside today.", "3.14 is pi, more or less.|-5 degrees outside today.");
  check("#hashtag stays when it is no heading.", "#hashtag stays when it is no heading.");
}

static void short_first_piece_is_joined(void **state) {
  struct out o;
  chunk("Hi. How can I help you today?", &o);
  assert_string_equal(o.s, "Hi. How can I help you today?");
  chunk("Hi.", &o);
  assert_string_equal(o.s, "Hi.");
  chunk("你好。", &o);
  assert_string_equal(o.s, "你好。");
  chunk("Okay. Sure. Let us begin now. Second one.", &o); /* held until long enough */
  assert_string_equal(o.s, "Okay. Sure. Let us begin now.|Second one.");
}

static void long_runs_are_cut_at_commas(void **state) {
  const char *text =
      "When you arrive at the station, walk to the main exit, turn left at the bakery, cross the "
      "bridge over the river, follow the path past the old church, and keep going until you see "
      "the red door, which is ours.";
  struct out o;
  chunk(text, &o);
  assert_true(o.n >= 2);
  char *copy = strdup(o.s);
  int pieces = 0;
  for (char *save, *p = strtok_r(copy, "|", &save); p; p = strtok_r(NULL, "|", &save), pieces++) {
    size_t n = strlen(p);
    if (pieces < o.n - 1) {
      assert_int_equal(p[n - 1], ',');
      assert_true(n >= 60 && n <= 140);
    }
  }
  free(copy);
  check(text, o.s);
  check("我们先去火车站，然后坐地铁到市中心，再换乘公交车到公园门口，接着步行大约十分钟，最后就能看到那座红色的房子了。",
        "我们先去火车站，然后坐地铁到市中心，再换乘公交车到公园门口，|接着步行大约十分钟，最后就能看到那座红色的房子了。");
}

static void endless_text_is_still_cut(void **state) {
  char text[1301];
  for (int i = 0; i < 1300; i++) text[i] = i % 6 == 5 ? ' ' : 'a';
  text[1300] = 0;
  struct out o;
  chunk(text, &o);
  assert_true(o.n >= 4);
  for (char *p = o.s, *bar; p; p = bar ? bar + 1 : NULL) {
    bar = strchr(p, '|');
    size_t n = bar ? (size_t)(bar - p) : strlen(p);
    assert_true(n <= 210);
  }
}

static void sentences_come_before_the_end(void **state) {
  struct chunker *c;
  assert_int_equal(chunker_new(&c), 0);
  struct out o = {0};
  chunker_push(c, "The first sentence is here. The sec", collect, &o);
  assert_string_equal(o.s, "The first sentence is here.");
  chunker_push(c, "ond one is on its way", collect, &o);
  assert_int_equal(o.n, 1);
  chunker_push(c, ". ", collect, &o);
  assert_string_equal(o.s, "The first sentence is here.|The second one is on its way.");
  chunker_push(c, "第三句。", collect, &o); /* waits: a closing quote could follow */
  assert_int_equal(o.n, 2);
  chunker_push(c, "第", collect, &o);
  assert_int_equal(o.n, 3);
  chunker_flush(c, collect, &o);
  assert_string_equal(o.s, "The first sentence is here.|The second one is on its way.|第三句。|第");
  chunker_free(c);
}

static void flush_emits_the_rest_once(void **state) {
  struct chunker *c;
  assert_int_equal(chunker_new(&c), 0);
  struct out o = {0};
  chunker_push(c, "no terminator here", collect, &o);
  assert_int_equal(o.n, 0);
  chunker_flush(c, collect, &o);
  assert_string_equal(o.s, "no terminator here");
  chunker_flush(c, collect, &o);
  assert_int_equal(o.n, 1);
  chunker_push(c, "  \n\t ", collect, &o);
  chunker_flush(c, collect, &o);
  assert_int_equal(o.n, 1);
  chunker_push(c, "** -- ``", collect, &o);
  chunker_flush(c, collect, &o);
  assert_int_equal(o.n, 1);
  chunker_push(c, "Hi. Again a reply.", collect, &o); /* a new reply: its short first piece waits again */
  chunker_flush(c, collect, &o);
  assert_string_equal(o.s, "no terminator here|Hi. Again a reply.");
  chunker_free(c);
}

static void reset_forgets_everything(void **state) {
  struct chunker *c;
  assert_int_equal(chunker_new(&c), 0);
  struct out o = {0};
  chunker_push(c, "Ok. Partial sentence with a multi-byte 你", collect, &o);
  chunker_push(c, "\xE5", collect, &o); /* half of 好 */
  chunker_reset(c);
  chunker_push(c, "- Fresh start here. And more.", collect, &o);
  chunker_flush(c, collect, &o);
  assert_string_equal(o.s, "Fresh start here.|And more.");
  chunker_free(c);
}

static void broken_utf8_does_not_crash(void **state) {
  struct out o;
  chunk("Bad \xFF\xFE bytes. Cut \xE4\xBD here. End \xE4", &o);
  assert_true(o.n >= 1);
  chunker_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(english_sentences),
      cmocka_unit_test(abbreviations_and_decimals),
      cmocka_unit_test(chinese_sentences),
      cmocka_unit_test(mixed_languages),
      cmocka_unit_test(markdown_is_dropped),
      cmocka_unit_test(short_first_piece_is_joined),
      cmocka_unit_test(long_runs_are_cut_at_commas),
      cmocka_unit_test(endless_text_is_still_cut),
      cmocka_unit_test(sentences_come_before_the_end),
      cmocka_unit_test(flush_emits_the_rest_once),
      cmocka_unit_test(reset_forgets_everything),
      cmocka_unit_test(broken_utf8_does_not_crash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
