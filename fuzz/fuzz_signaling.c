/*
 * fuzz_signaling: one text message on /ws, before any call exists.
 *
 * The dispatcher in app/signaling.c needs a live WebSocket to answer on, so
 * this target runs what it runs on a message, in its order, through the
 * functions it calls: the JSON parse with the same flags, the object and
 * "type" checks, and per type the fields a stranger controls: an offer's
 * call token (calltoken_verify, on the JSON string's full length, NULs
 * included), the token's and the page's call settings (calls_check_settings,
 * the strict check tokens get), the SDP (sdp_parse on the C string, as
 * calls.c passes it), a resume's call_id and resume_secret, and a ping's
 * echoed id. What the server would send back must serialize.
 */
#include <errno.h>
#include <string.h>

#include "app/calls.h"
#include "app/calltoken.h"
#include "fuzz.h"
#include "rtc/sdp.h"

#define SECRET "fuzzing-secret-0123456789abcdef" /* the one fuzz_calltoken's seeds use */
#define NOW 1800000000

static void check_settings(const json_t *settings) {
  char err[200] = "";
  int rc = calls_check_settings(settings, err, sizeof err);
  FUZZ_CHECK(rc == 0 || (rc == -EINVAL && err[0] != '\0'));
  if (!json_is_object(settings)) FUZZ_CHECK(rc != 0);
}

static void offer(json_t *msg) {
  json_t *token = json_object_get(msg, "token");
  if (json_is_string(token)) {
    struct calltoken t;
    char err[200] = "";
    int rc = calltoken_verify(SECRET, json_string_value(token), json_string_length(token), NOW, &t,
                              err, sizeof err);
    FUZZ_CHECK(rc == 0 || err[0] != '\0');
    if (rc == 0 && t.settings) check_settings(t.settings);
    calltoken_clear(&t);
  }
  json_t *config = json_object_get(msg, "config");
  if (config && !json_is_null(config)) check_settings(config);
  const char *text = json_string_value(json_object_get(msg, "sdp"));
  if (text) {
    struct sdp_session *s = NULL;
    char err[256] = "";
    if (sdp_parse(text, strlen(text), &s, err, sizeof err) == 0) {
      FUZZ_CHECK(s != NULL && sdp_ice_ufrag(s)[0] && sdp_ice_pwd(s)[0] && sdp_fingerprint(s)[0]);
      sdp_session_free(s);
    } else {
      FUZZ_CHECK(s == NULL && err[0] != '\0');
    }
  }
}

/* The reply to a ping echoes whatever "id" the page sent: it must still serialize. */
static void ping(json_t *msg) {
  json_t *reply = json_pack("{s:s}", "type", "pong");
  FUZZ_CHECK(reply != NULL);
  json_t *id = json_object_get(msg, "id");
  if (id) json_object_set(reply, "id", id);
  char *text = json_dumps(reply, JSON_COMPACT);
  FUZZ_CHECK(text != NULL);
  json_t *back = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
  FUZZ_CHECK(back != NULL);
  json_decref(back);
  free(text);
  json_decref(reply);
}

static void resume(json_t *msg) {
  json_t *id = json_object_get(msg, "call_id"), *secret = json_object_get(msg, "resume_secret");
  if (json_is_string(id)) FUZZ_CHECK(strlen(json_string_value(id)) <= json_string_length(id));
  if (json_is_string(secret))
    FUZZ_CHECK(strlen(json_string_value(secret)) <= json_string_length(secret));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t jerr;
  json_t *msg = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
  if (!msg) {
    FUZZ_CHECK(jerr.text[0] != '\0'); /* the page is told why */
    return 0;
  }
  const char *type = json_string_value(json_object_get(msg, "type"));
  if (json_is_object(msg) && type) {
    if (strcmp(type, "offer") == 0) offer(msg);
    else if (strcmp(type, "ping") == 0) ping(msg);
    else if (strcmp(type, "resume") == 0) resume(msg);
  }
  json_decref(msg);
  return 0;
}
