/* history: the window of exchanges a call's LLM sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agent/history.h"

static void assert_turn(const struct llm_turn *t, enum llm_role role, const char *text) {
  assert_int_equal(t->role, role);
  assert_string_equal(t->text, text);
}

static void turns_come_oldest_first(void **state) {
  struct history *h;
  assert_int_equal(history_new(&h, 4), 0);
  assert_int_equal(history_add_user(h, "what time is it"), 0);
  assert_int_equal(history_add_assistant(h, "It's three o'clock.", 0), 0);
  assert_int_equal(history_add_user(h, "  and the date?\n"), 0);
  struct llm_turn t[8];
  assert_int_equal(history_turns(h, t, 8), 3);
  assert_turn(&t[0], LLM_USER, "what time is it");
  assert_turn(&t[1], LLM_ASSISTANT, "It's three o'clock.");
  assert_turn(&t[2], LLM_USER, "and the date?"); /* trimmed */
  assert_int_equal(history_count(h), 3);
  history_free(h);
}

static void window_keeps_the_last_exchanges(void **state) {
  struct history *h;
  assert_int_equal(history_new(&h, 2), 0);
  char text[32];
  for (int i = 1; i <= 5; i++) {
    snprintf(text, sizeof text, "question %d", i);
    assert_int_equal(history_add_user(h, text), 0);
    snprintf(text, sizeof text, "answer %d", i);
    assert_int_equal(history_add_assistant(h, text, 0), 0);
  }
  assert_int_equal(history_count(h), 4);
  assert_int_equal(history_add_user(h, "question 6"), 0);
  struct llm_turn t[8];
  assert_int_equal(history_turns(h, t, 8), 3);
  assert_turn(&t[0], LLM_USER, "question 5");
  assert_turn(&t[1], LLM_ASSISTANT, "answer 5");
  assert_turn(&t[2], LLM_USER, "question 6");
  history_free(h);
}

static void greeting_before_the_first_question_leaves_with_it(void **state) {
  struct history *h;
  assert_int_equal(history_new(&h, 1), 0);
  assert_int_equal(history_add_assistant(h, "Hello, how can I help?", 0), 0);
  assert_int_equal(history_add_user(h, "one"), 0);
  assert_int_equal(history_add_assistant(h, "reply one", 0), 0);
  struct llm_turn t[4];
  assert_int_equal(history_turns(h, t, 4), 3);
  assert_turn(&t[0], LLM_ASSISTANT, "Hello, how can I help?");
  assert_int_equal(history_add_user(h, "two"), 0);
  assert_int_equal(history_turns(h, t, 4), 1);
  assert_turn(&t[0], LLM_USER, "two");
  history_free(h);
}

static void interrupted_reply_is_marked(void **state) {
  struct history *h;
  assert_int_equal(history_new(&h, 3), 0);
  assert_int_equal(history_add_user(h, "tell me a story"), 0);
  assert_int_equal(history_add_assistant(h, "Once upon a time, there was", 1), 0);
  assert_int_equal(history_add_user(h, "stop, what time is it"), 0);
  struct llm_turn t[4];
  assert_int_equal(history_turns(h, t, 4), 3);
  assert_turn(&t[1], LLM_ASSISTANT, "Once upon a time, there was" HISTORY_INTERRUPTED);
  assert_non_null(strstr(t[1].text, "[interrupted by the caller]"));
  history_free(h);
}

static void reply_cut_before_anything_played_leaves_no_trace(void **state) {
  struct history *h;
  assert_int_equal(history_new(&h, 3), 0);
  assert_int_equal(history_add_user(h, "what is"), 0);
  assert_int_equal(history_add_assistant(h, "", 1), 0);
  assert_int_equal(history_add_user(h, "twelve times seven"), 0);
  struct llm_turn t[4];
  assert_int_equal(history_turns(h, t, 4), 1); /* caller turns in a row become one */
  assert_turn(&t[0], LLM_USER, "what is twelve times seven");
  assert_int_equal(history_add_assistant(h, "Eighty-four.", 0), 0);
  assert_int_equal(history_add_assistant(h, "Anything else?", 0), 0);
  assert_int_equal(history_turns(h, t, 4), 2);
  assert_turn(&t[1], LLM_ASSISTANT, "Eighty-four. Anything else?");
  history_free(h);
}

static void short_output_gets_the_newest_turns(void **state) {
  struct history *h;
  assert_int_equal(history_new(&h, 5), 0);
  history_add_user(h, "a");
  history_add_assistant(h, "b", 0);
  history_add_user(h, "c");
  history_add_assistant(h, "d", 0);
  history_add_user(h, "e");
  struct llm_turn t[2];
  assert_int_equal(history_turns(h, t, 2), 2);
  assert_turn(&t[0], LLM_ASSISTANT, "d");
  assert_turn(&t[1], LLM_USER, "e");
  history_free(h);
}

static void bad_arguments_are_refused(void **state) {
  struct history *h = NULL;
  assert_int_equal(history_new(&h, 0), -EINVAL);
  assert_null(h);
  assert_int_equal(history_new(&h, 1), 0);
  assert_int_equal(history_add_user(h, NULL), -EINVAL);
  assert_int_equal(history_add_assistant(h, NULL, 0), -EINVAL);
  assert_int_equal(history_count(h), 0);
  history_free(h);
  history_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(turns_come_oldest_first),
      cmocka_unit_test(window_keeps_the_last_exchanges),
      cmocka_unit_test(greeting_before_the_first_question_leaves_with_it),
      cmocka_unit_test(interrupted_reply_is_marked),
      cmocka_unit_test(reply_cut_before_anything_played_leaves_no_trace),
      cmocka_unit_test(short_output_gets_the_newest_turns),
      cmocka_unit_test(bad_arguments_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
