/* local LLM backend: answers through the real backend, a libuv loop and a mailbox. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "agent/chunker.h"
#include "core/mailbox.h"
#include "core/pool.h"
#include "engines/engine.h"
#include "engines/llm.h"

extern const struct llm_backend llm_local, llm_fixed;

struct run {
  char text[4096];
  int tokens, done, errors, hangup;
  int release_after;      /* release the job after this many tokens (0: never) */
  struct llm_job *job;
};

static void on_token(void *user, const char *text) {
  struct run *r = user;
  assert_true(strlen(r->text) + strlen(text) < sizeof r->text);
  strcat(r->text, text);
  r->tokens++;
  if (r->release_after && r->tokens == r->release_after) {
    llm_release(r->job);
    r->job = NULL;
  }
}

static void on_done(void *user, int hangup) {
  struct run *r = user;
  r->done++;
  r->hangup = hangup;
}

static void on_error(void *user, const char *message) { ((struct run *)user)->errors++; }

static void no_messages(struct mailbox *mb, struct mailbox_msg *msg, void *user) { fail(); }

/* A loop with the mailbox a job posts to; nothing else may arrive on it. */
static struct mailbox *loop_open(uv_loop_t *loop) {
  struct mailbox *mb;
  assert_int_equal(uv_loop_init(loop), 0);
  assert_int_equal(mailbox_new(&mb, loop, no_messages, NULL), 0);
  return mb;
}

static void loop_close(uv_loop_t *loop, struct mailbox *mb) {
  mailbox_close(mb, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
}

/* Asks `be` about `text` in `language` and runs the loop until nothing is left. */
static void ask_backend(const struct llm_backend *be, const char *language, const char *text,
                        struct run *r, int release_now) {
  uv_loop_t loop;
  struct mailbox *mb = loop_open(&loop);
  struct llm_turn turns[] = {{.role = LLM_USER, .text = "hello"},
                             {.role = LLM_ASSISTANT, .text = "Hi there. It's a nice day [interrupted by the caller]"},
                             {.role = LLM_USER, .text = text}};
  struct llm_params p = {.system = "", .turns = turns, .nturns = 3, .language = language,
                         .max_tokens = 100, .temperature = 0.7};
  struct llm_cb cb = {.token = on_token, .done = on_done, .error = on_error, .user = r};
  void *engine = NULL;
  char err[128];
  assert_int_equal(be->open(&engine, NULL, err, sizeof err), 0);
  assert_int_equal(be->generate(engine, &p, mb, &cb, &r->job), 0);
  assert_int_equal(r->tokens + r->done, 0); /* nothing inside generate */
  if (release_now) {
    llm_release(r->job);
    r->job = NULL;
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  if (r->job) llm_release(r->job);
  loop_close(&loop, mb);
  be->close(engine);
}

static struct run *ask(const char *language, const char *text) {
  struct run *r = calloc(1, sizeof *r);
  assert_non_null(r);
  ask_backend(&llm_local, language, text, r, 0);
  assert_int_equal(r->done, 1);
  assert_int_equal(r->errors, 0);
  return r;
}

static void assert_reply_has(const char *language, const char *text, const char *expect) {
  struct run *r = ask(language, text);
  if (!strstr(r->text, expect)) fail_msg("\"%s\" -> \"%s\", expected \"%s\"", text, r->text, expect);
  assert_int_equal(r->hangup, 0);
  free(r);
}

/* The whole reply is `expect`, and the call goes on. */
static void assert_reply_is(const char *language, const char *text, const char *expect) {
  struct run *r = ask(language, text);
  assert_string_equal(r->text, expect);
  assert_int_equal(r->hangup, 0);
  free(r);
}

/* What the caller says, in the call's language, and a part of the reply. */
struct exchange {
  const char *language, *said, *reply_has;
};

static void assert_exchanges(const struct exchange *x, size_t n) {
  for (size_t i = 0; i < n; i++) assert_reply_has(x[i].language, x[i].said, x[i].reply_has);
}

#define ASSERT_EXCHANGES(table) assert_exchanges(table, sizeof table / sizeof table[0])

/* 1 if `word` stands in `s` as a whole word (not inside "twenty-one"). */
static int has_word(const char *s, const char *word) {
  size_t n = strlen(word);
  for (const char *p = strstr(s, word); p; p = strstr(p + 1, word)) {
    int before = p == s || p[-1] == ' ';
    int after = p[n] == ' ' || p[n] == '.' || p[n] == ',' || p[n] == 0;
    if (before && after) return 1;
  }
  return 0;
}

static void time_answer_says_the_current_hour(void **state) {
  static const char *const hours[] = {"twelve", "one", "two", "three", "four", "five", "six",
                                      "seven", "eight", "nine", "ten", "eleven"};
  time_t before = time(NULL);
  struct run *r = ask("en", "what time is it");
  time_t after = time(NULL);
  struct tm a, b;
  localtime_r(&before, &a);
  localtime_r(&after, &b);
  /* "twenty to four" names the next hour */
  int ok = has_word(r->text, hours[a.tm_hour % 12]) || has_word(r->text, hours[b.tm_hour % 12]) ||
           (a.tm_min > 30 && has_word(r->text, hours[(a.tm_hour + 1) % 12]));
  if (!ok) fail_msg("hour %d not in \"%s\"", a.tm_hour, r->text);
  assert_true(strncmp(r->text, "It's ", 5) == 0);
  assert_true(r->tokens >= 3);
  free(r);
}

/* 零点 at midnight, 十二点 at noon, else the hour on a 12-hour clock. */
static const char *zh_hour(int h) {
  static const char *const hours[] = {"十二点", "一点", "两点", "三点", "四点", "五点", "六点",
                                      "七点", "八点", "九点", "十点", "十一点"};
  return h == 0 ? "零点" : hours[h % 12];
}

static void time_answer_in_chinese_says_the_hour(void **state) {
  time_t before = time(NULL);
  struct run *r = ask("zh", "现在几点了");
  time_t after = time(NULL);
  struct tm a, b;
  localtime_r(&before, &a);
  localtime_r(&after, &b);
  if (!strstr(r->text, zh_hour(a.tm_hour)) && !strstr(r->text, zh_hour(b.tm_hour)))
    fail_msg("hour %d not in \"%s\"", a.tm_hour, r->text);
  assert_true(strncmp(r->text, "现在是", strlen("现在是")) == 0);
  free(r);
}

static void date_answer_names_the_weekday(void **state) {
  static const char *const days[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday",
                                     "Friday", "Saturday"};
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  struct run *r = ask("en", "what's the date today");
  if (!strstr(r->text, days[tm.tm_wday])) fail_msg("\"%s\"", r->text);
  assert_non_null(strstr(r->text, "Today is"));
  free(r);
}

static const struct exchange arithmetic_in_words_table[] = {
    {"en", "what is twelve times seven", "Twelve times seven is eighty-four."},
    {"en", "one hundred divided by four", "One hundred divided by four is twenty-five."},
    {"en", "what's two thousand and five minus six", "is one thousand nine hundred ninety-nine"},
    {"en", "what is a hundred and twenty plus three", "is one hundred twenty-three"},
    {"en", "twenty one multiplied by three", "is sixty-three"},
    {"en", "two plus three times four", "is fourteen"}, /* times first */
    {"en", "one divided by three", "is about zero point three three three"},
    {"en", "three point five plus one", "is four point five"},
    {"en", "five minus eight", "is negative three"},
    {"en", "seven divided by zero", "zero has no answer"},
};

static void arithmetic_in_words(void **state) { ASSERT_EXCHANGES(arithmetic_in_words_table); }

static const struct exchange arithmetic_in_digits_table[] = {
    {"en", "What's 3 plus 4?", "Three plus four is seven."},
    {"en", "12*7", "is eighty-four"},
    {"en", "1,000 / 8", "One thousand divided by eight is one hundred twenty-five."},
    {"en", "2.5 x 4", "is ten"},
    {"en", "what is 6 - 10", "is negative four"},
    {"zh", "12乘以7等于多少", "十二乘以七等于八十四。"},
};

static void arithmetic_in_digits(void **state) { ASSERT_EXCHANGES(arithmetic_in_digits_table); }

static const struct exchange arithmetic_in_chinese_table[] = {
    {"zh", "三加四等于几", "三加四等于七。"},
    {"zh", "一百除以四是多少", "一百除以四等于二十五。"},
    {"zh", "两百五减去五十", "等于二百。"},
    {"zh", "一千零五加五", "等于一千零一十。"},
    {"zh", "三万乘以三万", "等于九亿。"},
    {"zh", "十除以四", "等于二点五。"},
    {"zh", "四点五加一点五", "四点五加一点五等于六。"},
    {"zh", "二零二四加一", "等于二千零二十五。"},
    {"zh", "一百万除以七", "约等于十四万二千八百五十七点一四三。"},
    {"zh", "一万亿加一亿", "等于一万零一亿。"},
    {"en", "三加四等于几", "is seven."}, /* heard in Chinese, answered in the call's language */
};

static void arithmetic_in_chinese(void **state) { ASSERT_EXCHANGES(arithmetic_in_chinese_table); }

static void repeat_after_me_says_the_rest(void **state) {
  assert_reply_has("en", "repeat after me the quick brown fox", "the quick brown fox");
  assert_reply_is("en", "Please repeat after me: Good morning, Vietnam!", "Good morning, Vietnam!");
  assert_reply_is("en", "repeat after me goodbye", "goodbye"); /* words to repeat, not a farewell */
  assert_reply_is("zh", "跟我说：你好世界", "你好世界");
  assert_reply_has("en", "repeat after me", "Say repeat after me, and then");
}

static void say_that_again_repeats_the_last_reply(void **state) {
  assert_reply_is("en", "sorry can you say that again", "Hi there. It's a nice day");
  assert_reply_is("zh", "你说什么？", "Hi there. It's a nice day");
}

static void goodbye_hangs_up(void **state) {
  const char *en[] = {"goodbye", "ok thanks bye", "please hang up", "Bye!"};
  for (size_t i = 0; i < sizeof en / sizeof *en; i++) {
    struct run *r = ask("en", en[i]);
    assert_int_equal(r->hangup, 1);
    assert_non_null(strstr(r->text, "Goodbye"));
    free(r);
  }
  struct run *r = ask("zh", "好的，再见");
  assert_int_equal(r->hangup, 1);
  assert_non_null(strstr(r->text, "再见"));
  free(r);
}

static void unknown_gets_the_honest_answer(void **state) {
  struct run *r = ask("en", "what is the capital of france");
  assert_non_null(strstr(r->text, "without a language model"));
  assert_non_null(strstr(r->text, "openai"));
  assert_int_equal(r->hangup, 0);
  free(r);
  assert_reply_has("zh", "讲个笑话吧", "没有接入语言模型");
}

static const struct exchange greeting_help_and_thanks_table[] = {
    {"en", "hello", "Hello!"},
    {"en", "hey there how are you", "simple offline assistant"},
    {"en", "what can you do", "twelve times seven"},
    {"en", "thank you", "You're welcome"},
    {"zh", "你好", "你好！"},
    {"zh", "你能做什么", "三加四等于几"},
    {"zh", "谢谢", "不客气"},
    {"en", "   ", "didn't catch that"},
};

static void greeting_help_and_thanks(void **state) {
  ASSERT_EXCHANGES(greeting_help_and_thanks_table);
}

static void emit_count(void *user, const char *sentence) { ++*(int *)user; }

/* The reply arrives in pieces and the chunker makes sentences of it. */
static void reply_is_streamed_in_tokens(void **state) {
  struct run *r = ask("en", "what is the meaning of life");
  assert_true(r->tokens >= 20);
  struct chunker *c;
  assert_int_equal(chunker_new(&c), 0);
  int sentences = 0;
  chunker_push(c, r->text, emit_count, &sentences);
  chunker_flush(c, emit_count, &sentences);
  assert_int_equal(sentences, 2);
  chunker_free(c);
  free(r);
}

static void no_caller_turn_gets_didnt_catch_that(void **state) {
  uv_loop_t loop;
  struct mailbox *mb = loop_open(&loop);
  struct llm_turn turns[] = {{.role = LLM_ASSISTANT, .text = "Hello."}};
  struct llm_params p = {.turns = turns, .nturns = 1, .language = NULL};
  struct run *r = calloc(1, sizeof *r);
  struct llm_cb cb = {.token = on_token, .done = on_done, .error = on_error, .user = r};
  assert_int_equal(llm_local.generate(NULL, &p, mb, &cb, &r->job), 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(r->done, 1);
  assert_string_equal(r->text, "Sorry, I didn't catch that.");
  llm_release(r->job);
  loop_close(&loop, mb);
  free(r);
}

static void release_mid_stream_stops_callbacks(void **state) {
  struct run *r = calloc(1, sizeof *r);
  r->release_after = 2;
  ask_backend(&llm_local, "en", "tell me something", r, 0);
  assert_int_equal(r->tokens, 2);
  assert_int_equal(r->done, 0);
  free(r);
  r = calloc(1, sizeof *r);
  ask_backend(&llm_local, "en", "what time is it", r, 1);
  assert_int_equal(r->tokens + r->done + r->errors, 0);
  free(r);
}

/* Opened with an inference pool, as the server opens it: the answer is computed
 * there (never on the asking thread) and arrives the same as without one. */
static void with_a_pool_the_answer_comes_from_the_pool(void **state) {
  struct pool *pool;
  assert_int_equal(pool_new(&pool, 1), 0);
  struct engine_env env = {.pool = pool};
  void *engine = NULL;
  char err[128];
  assert_int_equal(llm_local.open(&engine, &env, err, sizeof err), 0);
  assert_ptr_equal(engine, pool);
  uv_loop_t loop;
  struct mailbox *mb = loop_open(&loop);
  struct llm_turn turns[] = {{.role = LLM_USER, .text = "what is two plus three"}};
  struct llm_params p = {.turns = turns, .nturns = 1, .language = "en"};
  struct run *r = calloc(1, sizeof *r);
  struct llm_cb cb = {.token = on_token, .done = on_done, .error = on_error, .user = r};
  assert_int_equal(llm_local.generate(engine, &p, mb, &cb, &r->job), 0);
  turns[0].text = "overwritten"; /* the backend copied what it reads */
  uv_run(&loop, UV_RUN_NOWAIT);
  for (int i = 0; i < 2000 && !r->done; i++) {
    uv_sleep(1);
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  assert_int_equal(r->done, 1);
  assert_int_equal(r->errors, 0);
  assert_non_null(strstr(r->text, "five"));
  llm_release(r->job);

  /* Released before the pool got to it: nothing ever arrives. */
  memset(r, 0, sizeof *r);
  assert_int_equal(llm_local.generate(engine, &p, mb, &cb, &r->job), 0);
  llm_release(r->job);
  pool_stop(pool); /* the item ran or was dropped */
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(r->tokens + r->done + r->errors, 0);

  /* A pool that has stopped refuses the request; the caller hears nothing. */
  memset(r, 0, sizeof *r);
  assert_int_not_equal(llm_local.generate(engine, &p, mb, &cb, &r->job), 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(r->tokens + r->done + r->errors, 0);
  loop_close(&loop, mb);
  llm_local.close(engine);
  pool_free(pool);
  free(r);
}

static void fixed_backend_gives_two_sentences(void **state) {
  struct run *r = calloc(1, sizeof *r);
  ask_backend(&llm_fixed, "en", "anything at all", r, 0);
  assert_int_equal(r->done, 1);
  assert_true(r->tokens > 5);
  assert_string_equal(r->text, "Thank you for calling. This is a fixed reply for load testing.");
  free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(time_answer_says_the_current_hour),
      cmocka_unit_test(time_answer_in_chinese_says_the_hour),
      cmocka_unit_test(date_answer_names_the_weekday),
      cmocka_unit_test(arithmetic_in_words),
      cmocka_unit_test(arithmetic_in_digits),
      cmocka_unit_test(arithmetic_in_chinese),
      cmocka_unit_test(repeat_after_me_says_the_rest),
      cmocka_unit_test(say_that_again_repeats_the_last_reply),
      cmocka_unit_test(goodbye_hangs_up),
      cmocka_unit_test(with_a_pool_the_answer_comes_from_the_pool),
      cmocka_unit_test(unknown_gets_the_honest_answer),
      cmocka_unit_test(greeting_help_and_thanks),
      cmocka_unit_test(reply_is_streamed_in_tokens),
      cmocka_unit_test(no_caller_turn_gets_didnt_catch_that),
      cmocka_unit_test(release_mid_stream_stops_callbacks),
      cmocka_unit_test(fixed_backend_gives_two_sentences),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
