/* redact: configured secrets leave no trace in error text, in any case or part. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/redact.h"

#define KEY "sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWx"

static struct redact *with(const char *secret) {
  struct redact *r;
  assert_int_equal(redact_new(&r), 0);
  assert_int_equal(redact_add(r, secret), 0);
  return r;
}

static void clean(const struct redact *r, const char *text, const char *want) {
  char out[512];
  redact_text(r, text, out, sizeof out);
  if (strcmp(out, want)) fail_msg("\"%s\" became \"%s\", not \"%s\"", text, out, want);
}

static void a_key_in_any_case_or_part_is_masked(void **state) {
  struct redact *r = with(KEY);
  clean(r, "Incorrect API key provided: " KEY ".", "Incorrect API key provided: [redacted].");
  clean(r, "key SK-PROJ-AB3DEF6HIJ9KLMN0PQRSTUVWX refused", "key [redacted] refused");
  clean(r, "key proj-Ab3dEf6hIj9kLmN0pQrStUvWx refused", "key [redacted] refused"); /* no sk- */
  clean(r, "key AB3DEF6HIJ9KLMN0PQRSTUVWX refused", "key [redacted] refused");           /* both */
  clean(r, "ends in ...QrStUvWx", "ends in ...[redacted]");                              /* 8 chars */
  clean(r, "first half sk-proj-Ab3dEf then more", "first half [redacted] then more");
  clean(r, "seven: StUvWx! fine", "seven: StUvWx! fine"); /* 6 in a row is not enough */
  clean(r, "no secret here", "no secret here");
  clean(r, "", "");
  redact_free(r);
}

static void each_secret_is_masked_and_runs_join(void **state) {
  struct redact *r = with("first-secret-value-0001");
  assert_int_equal(redact_add(r, "SecondSecretValue0002"), 0);
  assert_int_equal(redact_add(r, "abc"), 0); /* too short to be one: ignored */
  clean(r, "a=first-secret-value-0001 b=secondsecretvalue0002 abc",
        "a=[redacted] b=[redacted] abc");
  clean(r, "first-secret-value-0001SecondSecretValue0002", "[redacted]");
  redact_free(r);
}

static void short_secrets_are_masked_whole(void **state) {
  struct redact *r = with("pw4u");
  clean(r, "login pw4u failed, PW4U again", "login [redacted] failed, [redacted] again");
  clean(r, "pw4 is not it", "pw4 is not it");
  redact_free(r);
}

static void the_output_is_bounded(void **state) {
  struct redact *r = with(KEY);
  char out[8];
  redact_text(r, "x " KEY " and more text", out, sizeof out);
  assert_string_equal(out, "x [reda");
  redact_text(NULL, "plain copy", out, sizeof out);
  assert_string_equal(out, "plain c");
  redact_free(r);
}

static void the_configuration_names_every_secret(void **state) {
  struct config cfg;
  config_defaults(&cfg);
  setenv("TS_REDACT_ASR", "asr-key-0123456789abcdef", 1);
  setenv("TS_REDACT_LLM", "llm-key-0123456789ABCDEF", 1);
  setenv("TS_REDACT_TTS", "tts-key-zyxwvutsrqponmlk", 1);
  snprintf(cfg.asr_api_key_env, sizeof cfg.asr_api_key_env, "TS_REDACT_ASR");
  snprintf(cfg.llm_api_key_env, sizeof cfg.llm_api_key_env, "TS_REDACT_LLM");
  snprintf(cfg.tts_api_key_env, sizeof cfg.tts_api_key_env, "TS_REDACT_TTS");
  snprintf(cfg.admin_token, sizeof cfg.admin_token, "admin-token-9876543210");
  snprintf(cfg.call_secret, sizeof cfg.call_secret, "call-secret-1357924680");
  snprintf(cfg.database_url, sizeof cfg.database_url, "postgres://ts:db%%2Fpass%%40word99@db.internal:5432/ts");
  struct redact *r;
  assert_int_equal(redact_new(&r), 0);
  assert_int_equal(redact_add_config(r, &cfg), 0);
  clean(r, "ASR-KEY-0123456789ABCDEF llm-key-0123456789abcdef KEY-ZYXWVUTSRQPONMLK",
        "[redacted] [redacted] [redacted]");
  clean(r, "ADMIN-TOKEN-9876543210 / CALL-SECRET-1357924680", "[redacted] / [redacted]");
  clean(r, "auth failed for db/pass@word99 (db%2Fpass%40word99)", "auth failed for [redacted] ([redacted])");
  redact_free(r);

  /* the key=value form of a PostgreSQL connection string */
  snprintf(cfg.database_url, sizeof cfg.database_url, "host=db user=ts password='s3cr3t pass'");
  assert_int_equal(redact_new(&r), 0);
  assert_int_equal(redact_add_config(r, &cfg), 0);
  clean(r, "password s3cr3t pass rejected", "password [redacted] rejected");
  redact_free(r);
}

static void error_ids_are_fresh(void **state) {
  char a[REDACT_ERROR_ID_SIZE], b[REDACT_ERROR_ID_SIZE];
  redact_error_id(a);
  redact_error_id(b);
  assert_int_equal(strlen(a), 14);
  assert_true(strncmp(a, "e-", 2) == 0);
  assert_int_equal(strspn(a + 2, "0123456789abcdef"), 12);
  assert_string_not_equal(a, b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_key_in_any_case_or_part_is_masked),
      cmocka_unit_test(each_secret_is_masked_and_runs_join),
      cmocka_unit_test(short_secrets_are_masked_whole),
      cmocka_unit_test(the_output_is_bounded),
      cmocka_unit_test(the_configuration_names_every_secret),
      cmocka_unit_test(error_ids_are_fresh),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
