/* config: defaults, file syntax, environment overrides, and every kind of bad value. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"

static char path[64];

static const char *write_conf(const char *text) {
  snprintf(path, sizeof path, "/tmp/tingshuo-test-%d.conf", (int)getpid());
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static void defaults_are_sane(void **state) {
  struct config c;
  config_defaults(&c);
  assert_string_equal(c.listen, "127.0.0.1:8080");
  assert_string_equal(c.https_listen, "");
  assert_string_equal(c.log_level, "info");
  assert_string_equal(c.agent, "voice");
  assert_int_equal(c.ice_timeout_ms, 30000);
  assert_int_equal(c.resume_timeout_ms, 30000);
  assert_string_equal(c.media_address, "0.0.0.0");
}

static void file_sets_keys_comments_and_quotes(void **state) {
  struct config c;
  char err[512];
  config_defaults(&c);
  const char *p = write_conf("# a comment\n\n  listen = [::1]:9000  \n"
                             "data_dir = \"/var/lib/ts # not a comment\"\n"
                             "media_port=10000\r\n"
                             "announce_address = 203.0.113.7, 2001:db8::1\n");
  assert_int_equal(config_load_file(&c, p, err, sizeof err), 0);
  assert_string_equal(c.listen, "[::1]:9000");
  assert_string_equal(c.data_dir, "/var/lib/ts # not a comment");
  assert_int_equal(c.media_port, 10000);
  assert_string_equal(c.announce_address, "203.0.113.7, 2001:db8::1");
  unlink(p);
}

static void unknown_key_names_file_and_line(void **state) {
  struct config c;
  char err[512];
  config_defaults(&c);
  const char *p = write_conf("listen = 127.0.0.1:1\n\nlisten_port = 80\n");
  assert_int_equal(config_load_file(&c, p, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, ":3: unknown key \"listen_port\""));
  assert_non_null(strstr(err, path));
  /* Nothing of a bad file is applied, not even its good lines. */
  assert_string_equal(c.listen, "127.0.0.1:8080");
  unlink(p);
}

static void check_bad(const char *key, const char *value, const char *why) {
  struct config c, before;
  char err[512];
  config_defaults(&c);
  before = c;
  int rc = config_set(&c, key, value, "test", err, sizeof err);
  if (rc == 0) fail_msg("%s = \"%s\" was accepted", key, value);
  assert_non_null(strstr(err, key));
  assert_non_null(strstr(err, value));
  if (why && !strstr(err, why)) fail_msg("message \"%s\" lacks \"%s\"", err, why);
  assert_memory_equal(&c, &before, sizeof c);
}

static void bad_values_are_rejected_with_reasons(void **state) {
  check_bad("media_port", "70000", "out of range");
  check_bad("media_port", "-1", "out of range");
  check_bad("media_port", "12ab", "whole number");
  check_bad("media_port", "", "whole number");
  check_bad("log_level", "loud", "one of: error|warn|info|debug");
  check_bad("log_format", "xml", "text|json");
  check_bad("agent", "parrot", NULL);
  check_bad("listen", "8080", "host:port");
  check_bad("listen", "127.0.0.1:http", "port");
  check_bad("listen", "::1:80", "brackets");
  check_bad("listen", "[zz::1]:80", "IPv6");
  check_bad("listen", "bad host!:80", "host");
  check_bad("https_listen", "127.0.0.1:99999", "port");
  check_bad("media_address", "localhost", "IP");
  check_bad("announce_address", "1.2.3.4,,5.6.7.8", NULL);
  check_bad("announce_address", "example.com", "IP");
  check_bad("ice_timeout_ms", "10", "out of range");
}

static void good_values_are_accepted(void **state) {
  struct config c;
  char err[512];
  config_defaults(&c);
  assert_int_equal(config_set(&c, "listen", "localhost:0", "t", err, sizeof err), 0);
  assert_int_equal(config_set(&c, "listen", "0.0.0.0:443", "t", err, sizeof err), 0);
  assert_int_equal(config_set(&c, "https_listen", "", "t", err, sizeof err), 0);
  assert_int_equal(config_set(&c, "media_address", "::", "t", err, sizeof err), 0);
  assert_int_equal(config_set(&c, "log_level", "debug", "t", err, sizeof err), 0);
  assert_int_equal(config_set(&c, "media_workers", "4", "t", err, sizeof err), 0);
  assert_int_equal(c.media_workers, 4);
}

static void too_long_values_are_rejected(void **state) {
  struct config c;
  char err[512], big[2048];
  config_defaults(&c);
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(config_set(&c, "data_dir", big, "t", err, sizeof err), -ENAMETOOLONG);
  assert_string_equal(c.data_dir, "data");
}

static void malformed_lines(void **state) {
  struct config c;
  char err[512];
  config_defaults(&c);
  const char *p = write_conf("listen 127.0.0.1:80\n");
  assert_int_equal(config_load_file(&c, p, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, ":1: expected \"key = value\""));
  p = write_conf("data_dir = \"unterminated\n");
  assert_int_equal(config_load_file(&c, p, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "quotes"));
  assert_int_equal(config_load_file(&c, "/nonexistent/x.conf", err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, "/nonexistent/x.conf"));
  unlink(p);
}

static void environment_overrides(void **state) {
  struct config c;
  char err[512];
  config_defaults(&c);
  char *env[] = {"PATH=/bin", "TINGSHUO_DATA_DIR=/srv/ts", "TINGSHUO_MEDIA_PORT=20000", NULL};
  assert_int_equal(config_load_env(&c, env, err, sizeof err), 0);
  assert_string_equal(c.data_dir, "/srv/ts");
  assert_int_equal(c.media_port, 20000);

  char *bad[] = {"TINGSHUO_MEDIA_PORT=x", NULL};
  assert_int_equal(config_load_env(&c, bad, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "environment variable TINGSHUO_MEDIA_PORT"));
  assert_int_equal(c.media_port, 20000);

  char *unknown[] = {"TINGSHUO_MEDIA_PROT=1", NULL};
  assert_int_equal(config_load_env(&c, unknown, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, "TINGSHUO_MEDIA_PROT"));
}

/* Every default must itself be valid, and the example must list every key. */
static void example_lists_every_key_and_loads(void **state) {
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  config_print_example(mem);
  fclose(mem);
  const char *p = write_conf(buf);
  struct config c, d;
  char err[512];
  config_defaults(&c);
  config_defaults(&d);
  assert_int_equal(config_load_file(&c, p, err, sizeof err), 0);
  assert_memory_equal(&c, &d, sizeof c);
  const char *keys[] = {"listen", "https_listen", "tls_cert", "tls_key", "data_dir", "web_root",
                        "log_level", "log_format", "agent", "media_workers", "media_address",
                        "media_port", "announce_address", "max_calls", "ice_timeout_ms",
                        "resume_timeout_ms"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    char needle[64];
    snprintf(needle, sizeof needle, "\n%s = ", keys[i]);
    if (!strstr(buf, needle)) fail_msg("example lacks %s", keys[i]);
    assert_true(config_has_key(keys[i]));
  }
  free(buf);
  unlink(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(defaults_are_sane),
      cmocka_unit_test(file_sets_keys_comments_and_quotes),
      cmocka_unit_test(unknown_key_names_file_and_line),
      cmocka_unit_test(bad_values_are_rejected_with_reasons),
      cmocka_unit_test(good_values_are_accepted),
      cmocka_unit_test(too_long_values_are_rejected),
      cmocka_unit_test(malformed_lines),
      cmocka_unit_test(environment_overrides),
      cmocka_unit_test(example_lists_every_key_and_loads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
