/* llm openai: the chat completions request as it goes on the wire. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engines/service.h"

static struct svc_conf conf(const char *base, const char *key) {
  struct svc_conf c = {.service = "OpenAI chat completions", .max_tokens = 150, .temperature = 0.7};
  snprintf(c.base_url, sizeof c.base_url, "%s", base);
  snprintf(c.model, sizeof c.model, "gpt-4o-mini");
  snprintf(c.key, sizeof c.key, "%s", key);
  return c;
}

static const struct llm_turn TURNS[] = {{.role = LLM_USER, .text = "你好"}, {.role = LLM_ASSISTANT, .text = "Hi! How can I help?"},
                                        {.role = LLM_USER, .text = "What is 2+2?"}};

static void body_has_model_stream_messages_and_limits(void **state) {
  struct svc_conf c = conf("https://api.openai.com/v1", "sk-abc");
  struct llm_params p = {.system = "Be brief.", .turns = TURNS, .nturns = 3, .max_tokens = 80, .temperature = 0.3};
  struct http_request r;
  assert_int_equal(llm_openai_build(&c, &p, &r), 0);
  assert_string_equal(r.method, "POST");
  assert_string_equal(r.url, "https://api.openai.com/v1/chat/completions");
  json_t *b = json_loadb(r.body, r.body_len, 0, NULL);
  assert_non_null(b);
  assert_string_equal(json_string_value(json_object_get(b, "model")), "gpt-4o-mini");
  assert_true(json_is_true(json_object_get(b, "stream")));
  assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 80);
  assert_true(json_real_value(json_object_get(b, "temperature")) > 0.29 &&
              json_real_value(json_object_get(b, "temperature")) < 0.31);
  json_t *m = json_object_get(b, "messages");
  assert_int_equal(json_array_size(m), 4);
  const char *roles[] = {"system", "user", "assistant", "user"};
  const char *texts[] = {"Be brief.", "你好", "Hi! How can I help?", "What is 2+2?"};
  for (int i = 0; i < 4; i++) {
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, i), "role")), roles[i]);
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, i), "content")), texts[i]);
  }
  json_decref(b);
  http_request_clear(&r);
}

static void headers_carry_the_key_as_a_bearer_token(void **state) {
  struct svc_conf c = conf("http://localhost:11434/v1", "sk-abc");
  struct llm_params p = {.turns = TURNS, .nturns = 1};
  struct http_request r;
  assert_int_equal(llm_openai_build(&c, &p, &r), 0);
  assert_string_equal(http_request_header(&r, "authorization"), "Bearer sk-abc");
  assert_string_equal(http_request_header(&r, "Content-Type"), "application/json");
  assert_string_equal(http_request_header(&r, "Accept"), "text/event-stream");
  json_t *b = json_loadb(r.body, r.body_len, 0, NULL);
  assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 150); /* the configured one */
  assert_int_equal(json_array_size(json_object_get(b, "messages")), 1);        /* no empty system */
  json_decref(b);
  http_request_clear(&r);
}

static void no_key_no_credential_header(void **state) {
  struct svc_conf c = conf("http://127.0.0.1:8080/v1", "");
  struct llm_params p = {.turns = TURNS, .nturns = 1};
  struct http_request r;
  assert_int_equal(llm_openai_build(&c, &p, &r), 0);
  assert_null(http_request_header(&r, "Authorization"));
  http_request_clear(&r);
}

static void azure_openai_takes_an_api_key_header(void **state) {
  struct svc_conf c = conf("https://me.openai.azure.com/openai/v1", "0123abcd");
  struct llm_params p = {.turns = TURNS, .nturns = 1};
  struct http_request r;
  assert_int_equal(llm_openai_build(&c, &p, &r), 0);
  assert_string_equal(http_request_header(&r, "api-key"), "0123abcd");
  assert_null(http_request_header(&r, "Authorization"));
  http_request_clear(&r);
}

static void text_that_is_not_utf8_is_refused(void **state) {
  struct svc_conf c = conf("https://api.openai.com/v1", "k");
  struct llm_turn bad[] = {{.role = LLM_USER, .text = "caf\xe9"}};
  struct llm_params p = {.turns = bad, .nturns = 1};
  struct http_request r;
  assert_int_equal(llm_openai_build(&c, &p, &r), -EINVAL);
  assert_null(r.url);
  assert_null(r.body);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(body_has_model_stream_messages_and_limits),
      cmocka_unit_test(headers_carry_the_key_as_a_bearer_token),
      cmocka_unit_test(no_key_no_credential_header),
      cmocka_unit_test(azure_openai_takes_an_api_key_header),
      cmocka_unit_test(text_that_is_not_utf8_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
