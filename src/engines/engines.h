/*
 * engines: the ASR, LLM and TTS backends a server runs with, chosen by the
 * configuration keys `asr`, `llm` and `tts`, opened once and shared by every
 * call. `tts` names the backend for English; `tts_other` speaks every other
 * language (the embedded default pairs flite for English with espeak-ng).
 */
#ifndef TS_ENGINES_ENGINES_H
#define TS_ENGINES_ENGINES_H

#include "engines/asr.h"
#include "engines/llm.h"
#include "engines/tts.h"

struct engines;

int engines_open(struct engines **out, const struct engine_env *env, char *err, size_t errlen);
/* On the control loop's thread (the TTS cache's syntheses live there), once no worker uses e. */
void engines_close(struct engines *e);
/*
 * The secrets engine error text is cleaned of before it is logged: those
 * the configuration names and each service backend's key. Read-only once
 * engines_open has returned; any thread. NULL for e == NULL.
 */
const struct redact *engines_redact(const struct engines *e);
/* The tools the LLM may call (tools/tools.h); opened with the engines. NULL for e == NULL. */
struct tools *engines_tools(struct engines *e);

int engines_asr_start(struct engines *e, const struct asr_params *p, struct mailbox *home,
                      const struct asr_cb *cb, struct asr_session **out);
int engines_llm_generate(struct engines *e, const struct llm_params *p, struct mailbox *home,
                         const struct llm_cb *cb, struct llm_job **out);
/*
 * Picks the TTS backend for p->language; through the TTS cache when there
 * is one (tts_cache_mb, tts_cache_disk_mb) and the backend does not opt
 * out. (*out)->cached says whether the cache served it.
 */
int engines_tts_speak(struct engines *e, const struct tts_params *p, struct mailbox *home,
                      const struct tts_cb *cb, struct tts_job **out);
/*
 * Any thread: puts the phrase in the TTS cache (memory tier) unless it is
 * there or on its way, so that a later engines_tts_speak of it is a hit. A
 * synthesis it starts runs to its end though nobody listens. No-op without
 * a cache or for a backend that opts out. Returns 0 or a negative errno.
 */
int engines_tts_warm(struct engines *e, const struct tts_params *p);

const char *engines_asr_name(const struct engines *e);
const char *engines_llm_name(const struct engines *e);
const char *engines_tts_name(const struct engines *e, const char *language);

struct prom_buf;
/* Requests, errors, timeouts, cancellations and durations by kind and backend; any thread. */
void engines_write_metrics(const struct engines *e, struct prom_buf *b);

#endif
