/* llm anthropic: the Messages request as it goes on the wire. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engines/service.h"

static struct svc_conf conf(void) {
  struct svc_conf c = {.service = "Anthropic Messages", .max_tokens = 150};
  snprintf(c.base_url, sizeof c.base_url, "https://api.anthropic.com/v1");
  snprintf(c.model, sizeof c.model, "claude-3-5-haiku-latest");
  snprintf(c.key, sizeof c.key, "sk-ant-xyz");
  return c;
}

static void url_headers_and_system_prompt(void **state) {
  struct svc_conf c = conf();
  struct llm_turn turns[] = {{.role = LLM_USER, .text = "hello"}};
  struct llm_params p = {.system = "Be kind.", .turns = turns, .nturns = 1, .max_tokens = 64, .temperature = 0.5};
  struct http_request r;
  assert_int_equal(llm_anthropic_build(&c, &p, &r), 0);
  assert_string_equal(r.url, "https://api.anthropic.com/v1/messages");
  assert_string_equal(http_request_header(&r, "x-api-key"), "sk-ant-xyz");
  assert_string_equal(http_request_header(&r, "anthropic-version"), "2023-06-01");
  assert_null(http_request_header(&r, "Authorization"));
  json_t *b = json_loadb(r.body, r.body_len, 0, NULL);
  /* a list of text blocks, the last marked for Anthropic's prompt cache */
  json_t *sys = json_object_get(b, "system");
  assert_int_equal(json_array_size(sys), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(sys, 0), "text")), "Be kind.");
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(sys, 0), "cache_control"), "type")),
                      "ephemeral");
  assert_string_equal(json_string_value(json_object_get(b, "model")), "claude-3-5-haiku-latest");
  assert_true(json_is_true(json_object_get(b, "stream")));
  assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 64);
  json_t *m = json_object_get(b, "messages");
  assert_int_equal(json_array_size(m), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "role")), "user");
  json_decref(b);
  http_request_clear(&r);
}

static void messages_alternate_and_start_with_the_user(void **state) {
  struct svc_conf c = conf();
  struct llm_turn turns[] = {{.role = LLM_ASSISTANT, .text = "Hello, how can I help?"}, /* the greeting */
                             {.role = LLM_USER, .text = "hi"}, {.role = LLM_USER, .text = "are you there?"}, {.role = LLM_ASSISTANT, .text = ""},
                             {.role = LLM_ASSISTANT, .text = "Yes."}, {.role = LLM_USER, .text = "good"}};
  struct llm_params p = {.turns = turns, .nturns = 6, .temperature = 1.5};
  struct http_request r;
  assert_int_equal(llm_anthropic_build(&c, &p, &r), 0);
  json_t *b = json_loadb(r.body, r.body_len, 0, NULL);
  json_t *m = json_object_get(b, "messages");
  assert_int_equal(json_array_size(m), 3);
  assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "content")), "hi\nare you there?");
  assert_string_equal(json_string_value(json_object_get(json_array_get(m, 1), "role")), "assistant");
  assert_string_equal(json_string_value(json_object_get(json_array_get(m, 2), "content")), "good");
  assert_null(json_object_get(b, "system"));
  assert_true(json_real_value(json_object_get(b, "temperature")) <= 1.0); /* Anthropic's range */
  assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 150);
  json_decref(b);
  http_request_clear(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(url_headers_and_system_prompt),
      cmocka_unit_test(messages_alternate_and_start_with_the_user),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
