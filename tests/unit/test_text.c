/*
 * text: a string on the heap at its size, cut at its cap like snprintf(), and
 * left as it was when memory runs out.
 *
 * To make an allocation fail on demand the module's source is built into this
 * test with its malloc() pointed at one that can refuse; the linker then takes
 * these text_* functions, not the library's.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int refuse; /* the next allocations to fail */

static void *refusing_malloc(size_t n) {
  if (refuse > 0) {
    refuse--;
    return NULL;
  }
  return malloc(n);
}

#define malloc refusing_malloc
#include "agent/text.c"
#undef malloc

static void an_empty_text_holds_nothing(void **state) {
  (void)state;
  struct text t;
  text_init(&t, 100);
  assert_string_equal(text_str(&t), "");
  assert_int_equal(text_len(&t), 0);
  assert_null(t.s);
  assert_int_equal(text_set(&t, "words"), 0);
  assert_int_equal(text_set(&t, ""), 0); /* emptied: its block is given back */
  assert_null(t.s);
  assert_string_equal(text_str(&t), "");
  text_clear(&t);
}

static void it_is_held_at_about_its_size(void **state) {
  (void)state;
  struct text t;
  text_init(&t, 4095);
  assert_int_equal(text_set(&t, "hello"), 0);
  assert_true(t.cap >= 6 && t.cap <= TEXT_MIN_BLOCK);
  for (int i = 0; i < 100; i++) assert_int_equal(text_append(&t, "0123456789"), 0);
  assert_int_equal(text_len(&t), 1005);
  assert_true(t.cap > 1005 && t.cap <= 2 * 1006);
  for (int i = 0; i < 1000; i++) assert_int_equal(text_append(&t, "0123456789"), 0);
  assert_int_equal(text_len(&t), 4095);
  assert_int_equal(t.cap, 4096); /* never more than the cap and its NUL */
  text_clear(&t);
  assert_null(t.s);
  assert_int_equal(text_append(&t, "again"), 0); /* still usable */
  assert_string_equal(text_str(&t), "again");
  text_clear(&t);
}

static void what_does_not_fit_is_cut_at_the_cap(void **state) {
  (void)state;
  struct text t;
  text_init(&t, 8);
  assert_int_equal(text_set(&t, "hello world"), 0);
  assert_string_equal(text_str(&t), "hello wo");
  assert_int_equal(text_append(&t, "more"), 0);
  assert_string_equal(text_str(&t), "hello wo");
  assert_int_equal(text_set(&t, "abc"), 0);
  assert_int_equal(text_append(&t, "defghijk"), 0);
  assert_string_equal(text_str(&t), "abcdefgh");
  assert_int_equal(text_len(&t), 8);
  text_clear(&t);
}

/* The same as the agent's fixed buffers did: a space only between words, and one that
 * fits while the second part does not is kept. */
static void joined_parts_get_one_space_between_words(void **state) {
  (void)state;
  struct text t;
  text_init(&t, 5);
  assert_int_equal(text_join(&t, "ab", "cd"), 0);
  assert_string_equal(text_str(&t), "ab cd");
  assert_int_equal(text_join(&t, "", "cd"), 0);
  assert_string_equal(text_str(&t), "cd");
  assert_int_equal(text_join(&t, "ab", ""), 0);
  assert_string_equal(text_str(&t), "ab");
  assert_int_equal(text_join(&t, "abcd", "xy"), 0);
  assert_string_equal(text_str(&t), "abcd ");
  assert_int_equal(text_join(&t, "abcdefg", "xy"), 0);
  assert_string_equal(text_str(&t), "abcde");
  assert_int_equal(text_join(&t, "", ""), 0);
  assert_null(t.s);
  text_clear(&t);
}

/* heard_before = heard_before + the new words; a text set from a part of itself. */
static void a_text_may_be_written_from_itself(void **state) {
  (void)state;
  struct text t;
  text_init(&t, 4095);
  assert_int_equal(text_set(&t, "one"), 0);
  assert_int_equal(text_join(&t, text_str(&t), "two"), 0);
  assert_string_equal(text_str(&t), "one two");
  char longer[200];
  memset(longer, 'x', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  assert_int_equal(text_join(&t, text_str(&t), longer), 0); /* grows while reading itself */
  assert_int_equal(text_len(&t), 7 + 1 + 199);
  assert_memory_equal(text_str(&t), "one two x", 9);
  assert_int_equal(text_set(&t, text_str(&t) + 4), 0);
  assert_memory_equal(text_str(&t), "two xx", 6);
  assert_int_equal(text_len(&t), 3 + 1 + 199);
  assert_int_equal(text_join(&t, "zero", text_str(&t)), 0);
  assert_memory_equal(text_str(&t), "zero two xx", 11);
  assert_int_equal(text_append(&t, text_str(&t)), 0);
  assert_int_equal(text_len(&t), 2 * (5 + 3 + 1 + 199));
  text_clear(&t);
}

static void a_failed_grow_keeps_the_old_text(void **state) {
  (void)state;
  struct text t;
  text_init(&t, 4095);
  char longer[100];
  memset(longer, 'y', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  refuse = 1;
  assert_int_equal(text_set(&t, "first"), -ENOMEM);
  assert_string_equal(text_str(&t), "");
  assert_int_equal(text_set(&t, "first"), 0);
  refuse = 3;
  assert_int_equal(text_append(&t, longer), -ENOMEM);
  assert_int_equal(text_set(&t, longer), -ENOMEM);
  assert_int_equal(text_join(&t, "zero", longer), -ENOMEM);
  assert_string_equal(text_str(&t), "first");
  assert_int_equal(text_len(&t), 5);
  refuse = 1;
  assert_int_equal(text_set(&t, "two"), 0); /* fits the block it has: needs no memory */
  assert_string_equal(text_str(&t), "two");
  refuse = 0;
  assert_int_equal(text_append(&t, longer), 0);
  assert_int_equal(text_len(&t), 3 + 99);
  text_clear(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(an_empty_text_holds_nothing),
      cmocka_unit_test(it_is_held_at_about_its_size),
      cmocka_unit_test(what_does_not_fit_is_cut_at_the_cap),
      cmocka_unit_test(joined_parts_get_one_space_between_words),
      cmocka_unit_test(a_text_may_be_written_from_itself),
      cmocka_unit_test(a_failed_grow_keeps_the_old_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
