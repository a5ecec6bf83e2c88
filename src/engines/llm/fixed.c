/*
 * The "fixed" LLM backend, for load tests.
 *
 * It answers every turn at once with the same two sentences, streamed as
 * tokens, so that a benchmark measures the server (media, ASR, chunking,
 * TTS, scheduling) rather than how fast a model thinks. Two sentences, so
 * the chunker and the sentence-by-sentence synthesis are exercised as they
 * are with a real model. Not meant for callers.
 */
#include <string.h>

#include "engines/llm/canned.h"

extern const struct llm_backend llm_fixed;

static const char reply_en[] = "Thank you for calling. This is a fixed reply for load testing.";
static const char reply_zh[] = "感谢您的来电。这是用于压力测试的固定回复。";

static int fixed_open(void **engine, const struct engine_env *env, char *err, size_t errlen) {
  *engine = NULL;
  return 0;
}

static void fixed_close(void *engine) {}

static int fixed_generate(void *engine, const struct llm_params *p, struct mailbox *home,
                          const struct llm_cb *cb, struct llm_job **out) {
  int zh = p->language && strncmp(p->language, "zh", 2) == 0;
  return canned_reply(&llm_fixed, zh ? reply_zh : reply_en, 0, home, cb, out);
}

const struct llm_backend llm_fixed = {
    .name = "fixed",
    .open = fixed_open,
    .close = fixed_close,
    .generate = fixed_generate,
};
