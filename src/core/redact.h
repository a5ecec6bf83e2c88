/*
 * redact: what of an error may leave the server, and what the log may keep.
 *
 * An AI service's error text is written by someone else and may repeat
 * what we sent it: a 401 body that quotes the API key, upper-cased or
 * without its "sk-" prefix, or curl's "Failed to connect to 10.0.0.7 port
 * 8080". A caller gets none of it: a fixed message and an error id. The
 * detail goes to the log under that id, with every configured secret
 * masked.
 *
 * A secret is masked wherever any 8 characters of it appear in a row, in
 * any letter case, so a key that comes back cut, re-cased or with its
 * prefix dropped is still caught. A secret shorter than 8 characters (only
 * a database password can be) is masked where it appears whole; one
 * shorter than 4 is not a secret worth the noise and is not kept.
 *
 * The set is filled before any thread reads it and not changed after;
 * reading it from many threads at once is then safe.
 */
#ifndef TS_CORE_REDACT_H
#define TS_CORE_REDACT_H

#include <stddef.h>

#include "core/config.h"

#define REDACT_MASK "[redacted]"
#define REDACT_ERROR_ID_SIZE 16 /* "e-" + 12 hex digits + NUL, with room */

struct redact;

int redact_new(struct redact **out);
void redact_free(struct redact *r);

/* Adds a copy of `secret` (ignored when NULL or shorter than 4). 0, -ENOMEM or -ENOSPC (32 kept). */
int redact_add(struct redact *r, const char *secret);

/*
 * Adds every secret `cfg` names: the API keys in the environment variables
 * asr_api_key_env, llm_api_key_env and tts_api_key_env name, admin_token,
 * call_secret and the password in database_url. 0 or as redact_add.
 */
int redact_add_config(struct redact *r, const struct config *cfg);

/*
 * Copies `text` into out (outlen bytes, always terminated) with every
 * secret replaced by REDACT_MASK; r may be NULL (a plain copy). Without
 * memory to work in, out is REDACT_MASK alone: nothing rather than a leak.
 */
void redact_text(const struct redact *r, const char *text, char *out, size_t outlen);

/* A fresh random id ("e-" and 12 hex digits) that ties what a caller is told to a log line. */
void redact_error_id(char out[REDACT_ERROR_ID_SIZE]);

#endif
