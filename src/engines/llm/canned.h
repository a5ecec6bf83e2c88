/*
 * canned: streams a reply that is known in full before it starts, for the
 * LLM backends that compute their answer at once (local, fixed). The text
 * goes out as tokens the way a model's would: a word at a time, and two
 * characters at a time in text without spaces, so everything downstream
 * (the sentence chunker above all) sees a real stream.
 */
#ifndef TS_ENGINES_LLM_CANNED_H
#define TS_ENGINES_LLM_CANNED_H

#include "engines/llm.h"

/*
 * Posts `text` as tokens and then done(hangup) to `home`; nothing is called
 * before this returns. On failure (-ENOMEM) nothing is ever called.
 */
int canned_reply(const struct llm_backend *be, const char *text, int hangup,
                 struct mailbox *home, const struct llm_cb *cb, struct llm_job **out);

/*
 * Any thread: posts `text` as tokens and then done(hangup) to j's home.
 * Returns 0 or -ENOMEM (then only some tokens, and no done, were posted).
 */
int canned_post(struct llm_job *j, const char *text, int hangup);

#endif
