/* reply: the reply in progress owns its sentences and its engine jobs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/reply.h"
#include "engines/llm.h"
#include "engines/tts.h"

static int destroyed;

static void count_destroy(struct eng_job *j) {
  destroyed++;
  free(j);
}

static void a_turn_is_not_yet_in_the_history(void **state) {
  (void)state;
  struct reply *turn = NULL, *greeting = NULL;
  assert_int_equal(reply_new(&turn, 1), 0);
  assert_int_equal(reply_new(&greeting, 0), 0);
  assert_true(turn->is_turn);
  assert_false(turn->user_in_history);
  assert_false(greeting->is_turn);
  assert_true(greeting->user_in_history); /* there is no caller's turn to record */
  assert_false(turn->llm_done || turn->held || turn->barge || turn->paused || turn->nsent);
  assert_string_equal(reply_text(turn), "");
  assert_null(turn->text.s); /* an empty text takes no memory */
  reply_free(turn);
  reply_free(greeting);
  reply_free(NULL);
}

static void sentences_come_out_in_order(void **state) {
  (void)state;
  struct reply *r = NULL;
  assert_int_equal(reply_new(&r, 1), 0);
  assert_null(reply_pop_sentence(r));
  assert_int_equal(reply_push_sentence(r, "One."), 0);
  assert_int_equal(reply_push_sentence(r, "Two."), 0);
  char *s = reply_pop_sentence(r);
  assert_string_equal(s, "One.");
  free(s);
  assert_int_equal(reply_push_sentence(r, "Three."), 0);
  s = reply_pop_sentence(r);
  assert_string_equal(s, "Two.");
  free(s);
  assert_int_equal(r->nsent, 1);
  reply_free(r); /* "Three." goes with it (the sanitizer build checks) */
}

static void a_full_queue_refuses_more(void **state) {
  (void)state;
  struct reply *r = NULL;
  assert_int_equal(reply_new(&r, 1), 0);
  for (int i = 0; i < REPLY_MAX_SENTENCES; i++) assert_int_equal(reply_push_sentence(r, "x."), 0);
  assert_int_equal(reply_push_sentence(r, "one too many."), -ENOSPC);
  assert_int_equal(r->nsent, REPLY_MAX_SENTENCES);
  reply_free(r);
}

static void text_is_appended_and_cut_to_fit(void **state) {
  (void)state;
  struct reply *r = NULL;
  assert_int_equal(reply_new(&r, 1), 0);
  assert_int_equal(reply_append(r, "Hello"), 0);
  assert_int_equal(reply_append(r, ", there."), 0);
  assert_string_equal(reply_text(r), "Hello, there.");
  assert_true(r->text.cap < REPLY_MAX_TEXT); /* held at about its size, not the cap's */
  char big[REPLY_MAX_TEXT];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(reply_append(r, big), 0);
  assert_int_equal(strlen(reply_text(r)), REPLY_MAX_TEXT - 1);
  assert_memory_equal(reply_text(r), "Hello, there.a", 14);
  assert_int_equal(reply_append(r, "more"), 0); /* full: nothing more is kept */
  assert_int_equal(strlen(reply_text(r)), REPLY_MAX_TEXT - 1);
  reply_free(r); /* the text with it (the sanitizer build checks) */
}

/* Freeing the reply cancels its jobs: a closure still holding one sees it cancelled,
 * so nothing reaches the agent; the job goes when that closure lets go. */
static void freeing_the_reply_releases_its_jobs(void **state) {
  (void)state;
  struct reply *r = NULL;
  assert_int_equal(reply_new(&r, 1), 0);
  struct llm_job *llm = calloc(1, sizeof *llm);
  struct tts_job *tts = calloc(1, sizeof *tts);
  assert_non_null(llm);
  assert_non_null(tts);
  eng_job_init(&llm->job, NULL, count_destroy);
  eng_job_init(&tts->job, NULL, count_destroy);
  eng_job_ref(&llm->job); /* a result on its way */
  r->llm = llm;
  r->tts = tts;
  destroyed = 0;
  reply_free(r);
  assert_int_equal(destroyed, 1); /* the synthesis had nothing in flight */
  assert_true(eng_job_cancelled(&llm->job));
  eng_job_unref(&llm->job);
  assert_int_equal(destroyed, 2);
}

static void ending_a_job_lets_it_go_at_once(void **state) {
  (void)state;
  struct reply *r = NULL;
  assert_int_equal(reply_new(&r, 1), 0);
  struct tts_job *tts = calloc(1, sizeof *tts);
  assert_non_null(tts);
  eng_job_init(&tts->job, NULL, count_destroy);
  r->tts = tts;
  destroyed = 0;
  reply_end_tts(r);
  assert_null(r->tts);
  assert_int_equal(destroyed, 1);
  reply_end_llm(r); /* none: nothing happens */
  reply_free(r);
  assert_int_equal(destroyed, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_turn_is_not_yet_in_the_history),
      cmocka_unit_test(sentences_come_out_in_order),
      cmocka_unit_test(a_full_queue_refuses_more),
      cmocka_unit_test(text_is_appended_and_cut_to_fit),
      cmocka_unit_test(freeing_the_reply_releases_its_jobs),
      cmocka_unit_test(ending_a_job_lets_it_go_at_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
