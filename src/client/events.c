/*
 * Server events as text.
 *
 * The table of docs/protocol.md, one formatter per type. Unknown types are
 * printed as their JSON, so a newer server's events still show; the level
 * meter (five a second) is left out, as it would drown everything else.
 */
#include "client/events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *str(const json_t *msg, const char *key) {
  const char *s = json_string_value(json_object_get(msg, key));
  return s ? s : "";
}

static double num(const json_t *msg, const char *key) {
  const json_t *v = json_object_get(msg, key);
  return json_is_number(v) ? json_number_value(v) : -1;
}

static void format_latency(const json_t *msg, char *out, size_t cap) {
  static const char *const keys[] = {"voice_to_voice_ms", "endpoint_ms", "asr_ms",
                                     "llm_first_token_ms", "llm_first_sentence_ms",
                                     "tts_first_audio_ms", "overhead_ms", "barge_in_ms"};
  size_t used = (size_t)snprintf(out, cap, "latency turn %d:", (int)num(msg, "turn"));
  const char *sep = " ";
  for (size_t i = 0; i < sizeof keys / sizeof keys[0] && used < cap; i++) {
    double v = num(msg, keys[i]);
    if (v < 0) continue;
    size_t kl = strlen(keys[i]) - 3; /* without "_ms" */
    used += (size_t)snprintf(out + used, cap - used, "%s%.*s %.0f ms", sep, (int)kl, keys[i], v);
    sep = ", ";
  }
  if (used < cap && json_is_true(json_object_get(msg, "tts_cached")))
    snprintf(out + used, cap - used, "%stts cached", sep);
}

int events_format(const json_t *msg, char *out, size_t cap) {
  const char *type = str(msg, "type");
  if (strcmp(type, "level") == 0 || strcmp(type, "pong") == 0) return -ENOENT;
  if (strcmp(type, "hello") == 0)
    snprintf(out, cap, "hello: %s %s", str(msg, "server"), str(msg, "version"));
  else if (strcmp(type, "answer") == 0)
    snprintf(out, cap, "answer: call %s", str(msg, "call_id"));
  else if (strcmp(type, "connected") == 0)
    snprintf(out, cap, "connected: call %s", str(msg, "call_id"));
  else if (strcmp(type, "end") == 0)
    snprintf(out, cap, "end: %s", str(msg, "reason"));
  else if (strcmp(type, "error") == 0)
    snprintf(out, cap, "error %s: %s", str(msg, "code"), str(msg, "message"));
  else if (strcmp(type, "state") == 0)
    snprintf(out, cap, "state: %s", str(msg, "state"));
  else if (strcmp(type, "transcript") == 0)
    snprintf(out, cap, "transcript%s: \"%s\"", json_is_true(json_object_get(msg, "final")) ? " (final)" : "",
             str(msg, "text"));
  else if (strcmp(type, "reply") == 0)
    snprintf(out, cap, "reply%s: \"%s\"",
             json_is_true(json_object_get(msg, "interrupted")) ? " (interrupted)" : "", str(msg, "text"));
  else if (strcmp(type, "reply_partial") == 0)
    snprintf(out, cap, "reply_partial: \"%s\"", str(msg, "text"));
  else if (strcmp(type, "latency") == 0)
    format_latency(msg, out, cap);
  else {
    char *text = json_dumps(msg, JSON_COMPACT);
    snprintf(out, cap, "%s: %s", type[0] ? type : "message", text ? text : "?");
    free(text);
  }
  return 0;
}

int events_latency(const json_t *msg, struct events_latency *lat) {
  if (strcmp(str(msg, "type"), "latency") != 0) return -EINVAL;
  lat->turn = (int)num(msg, "turn");
  lat->endpoint_ms = num(msg, "endpoint_ms");
  lat->voice_to_voice_ms = num(msg, "voice_to_voice_ms");
  lat->barge_in_ms = num(msg, "barge_in_ms");
  lat->overhead_ms = num(msg, "overhead_ms");
  return 0;
}

int events_reply_interrupted(const json_t *msg) {
  if (strcmp(str(msg, "type"), "reply") != 0) return -EINVAL;
  return json_is_true(json_object_get(msg, "interrupted")) ? 1 : 0;
}
