/*
 * service: what the engine backends that call AI services over HTTP share.
 *
 * A backend reads its settings once at open into a struct svc_conf (base
 * URL, model, voice, the API key from the environment). Per job it builds a
 * struct http_request on the home thread (the request builders are public
 * so tests can check the exact wire format) and runs it through a
 * struct svc_call, which carries it to the control loop, where the HTTP
 * client lives, and keeps the job alive while the transfer runs:
 *
 *   home thread              control loop
 *   svc_call_start   ---->   http_start; head/data/done callbacks parse
 *                            and eng_job_post results home
 *   svc_call_cancel  ---->   http_cancel (the connection closes at once)
 *
 * The transfer holds a job reference from start to its end or cancel.
 * Error messages name the service and never carry the key: svc_error()
 * builds them from the HTTP result and the service's error body, and scrubs
 * every secret the server knows and anything that looks like a credential.
 * They are for the log: the voice agent tells the caller only that the
 * service is unavailable, with an error id that finds the log line.
 */
#ifndef TS_ENGINES_SERVICE_H
#define TS_ENGINES_SERVICE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engines/asr.h"
#include "engines/engine.h"
#include "engines/job.h"
#include "engines/llm.h"
#include "engines/tts.h"
#include "net/http_client.h"

struct svc_conf {
  const char *service;      /* for messages, e.g. "OpenAI chat completions" */
  char base_url[1024];      /* without a trailing slash */
  char model[128];
  char voice[128];
  char language[16];
  char prompt[1024];
  char key[512];            /* "" = send no credential (local servers) */
  int max_tokens;
  double temperature;
  int rate;                 /* percent of normal speed */
  struct http_client *http;
  struct mailbox *control;
};

/*
 * Fills the connection part of c: base URL and model (config value or the
 * default), key from the environment variable `key_env` (or `default_env`),
 * http and control from env. Fails with a message if env has no control
 * loop or HTTP client, or the URL is not http(s).
 */
int svc_conf_init(struct svc_conf *c, const struct engine_env *env, const char *service,
                  const char *base_url, const char *default_base, const char *model,
                  const char *default_model, const char *key_env, const char *default_env,
                  char *err, size_t errlen);

/*
 * The same, into a conf of its own: a service backend's engine is its conf,
 * closed with free(). On failure *out is untouched.
 */
int svc_conf_new(struct svc_conf **out, const struct engine_env *env, const char *service,
                 const char *base_url, const char *default_base, const char *model,
                 const char *default_model, const char *key_env, const char *default_env,
                 char *err, size_t errlen);

/* Opens a kept-alive connection to the service now (on the control loop). */
void svc_conf_warm(const struct svc_conf *c);

/* ---- building a request ---- */

/* Clears out and makes it a POST to the service c names. */
void svc_request_post(const struct svc_conf *c, struct http_request *out);
/*
 * Sets root (taken, may be NULL) as the compact JSON body and adds
 * Content-Type: application/json. Returns 0, -EINVAL (no root) or -ENOMEM;
 * on failure the caller clears out.
 */
int svc_request_json(struct http_request *out, json_t *root);
/*
 * Closes `f`, an open_memstream(body, len) the body was written to, and
 * makes *body the request's body. Returns 0, or -ENOMEM (a write or the
 * close failed; *body is then freed).
 */
int svc_request_memstream(struct http_request *out, FILE *f, char **body, size_t *len);

/* ---- one request for one job ---- */

struct svc_call;

struct svc_call_ops {
  /* Control loop. Non-zero stops the transfer (done then sees rc = -ECANCELED). */
  int (*head)(struct svc_call *sc, long status, const char *content_type);
  int (*data)(struct svc_call *sc, const char *buf, size_t len);
  /* Control loop, once, unless the job was cancelled first. */
  void (*done)(struct svc_call *sc, const struct http_result *r);
};

struct svc_call {
  struct eng_job *job;
  const struct svc_conf *conf;
  const struct svc_call_ops *ops;
  struct http_request req;     /* built on the home thread before start */
  struct http_transfer *t;     /* control loop only */
};

void svc_call_init(struct svc_call *sc, struct eng_job *job, const struct svc_conf *conf,
                   const struct svc_call_ops *ops);
/* Home thread, once sc->req is built. Returns 0 or -ENOMEM. */
int svc_call_start(struct svc_call *sc);
/* Home thread (a job's on_cancel): aborts the transfer if one runs. */
void svc_call_cancel(struct svc_call *sc);
/* From the job's destroy: frees what the call still holds. */
void svc_call_clear(struct svc_call *sc);

/*
 * The message for a failed request: "<service>: <what went wrong>", with
 * the service's own explanation from an error body when there is one
 * (OpenAI/Anthropic {"error":{"message"}}, ElevenLabs {"detail":...}) and
 * any credential removed.
 */
void svc_error(const struct svc_conf *c, const struct http_result *r, char *out, size_t outlen);
/*
 * Masks, in place (msg holds size bytes), the configured key (in any letter
 * case, and any 8 characters of it in a row: a service may echo it
 * re-cased or without its prefix) and anything shaped like an API key.
 */
void svc_scrub(const struct svc_conf *c, char *msg, size_t size);

/* Posts a copy of text home to fn (arg is the NUL-terminated copy). */
int svc_post_text(struct eng_job *j, eng_job_fn fn, const char *text, size_t len);

/*
 * Speech synthesis from a service that streams raw 16-bit little-endian
 * mono PCM at `sample_rate`: what the three TTS backends share. Chunks go
 * home as they arrive (a sample split between two reads is joined); a
 * JSON, text or HTML body where audio was expected is an error.
 */
typedef int (*svc_tts_build_fn)(const struct svc_conf *c, const struct tts_params *p,
                                struct http_request *out);
int svc_tts_speak(const struct svc_conf *c, const struct tts_backend *be, int sample_rate,
                  svc_tts_build_fn build, const struct tts_params *p, struct mailbox *home,
                  const struct tts_cb *cb, struct tts_job **out);

/*
 * Opens a TTS backend's engine (a struct svc_conf, closed with free()) from
 * the tts_* settings: the voice is tts_voice or `default_voice`; a service
 * that takes no model passes default_model NULL.
 */
int svc_tts_open(void **out, const struct engine_env *env, const char *service, const char *default_base,
                 const char *default_model, const char *default_key_env, const char *default_voice,
                 char *err, size_t errlen);

/* ---- the backends and their request builders ---- */

extern const struct llm_backend llm_openai;
extern const struct llm_backend llm_anthropic;
extern const struct asr_backend asr_openai;
extern const struct tts_backend tts_openai;
extern const struct tts_backend tts_elevenlabs;
extern const struct tts_backend tts_azure;

/* Each returns 0 or a negative errno and fills `out` (cleared on failure). */
int llm_openai_build(const struct svc_conf *c, const struct llm_params *p, struct http_request *out);
int llm_anthropic_build(const struct svc_conf *c, const struct llm_params *p, struct http_request *out);
/* `language` may be NULL; pcm is 16 kHz mono. */
int asr_openai_build(const struct svc_conf *c, const char *language, const int16_t *pcm, size_t n,
                     struct http_request *out);
int tts_openai_build(const struct svc_conf *c, const struct tts_params *p, struct http_request *out);
int tts_elevenlabs_build(const struct svc_conf *c, const struct tts_params *p, struct http_request *out);
int tts_azure_build(const struct svc_conf *c, const struct tts_params *p, struct http_request *out);

/* The 44-byte RIFF/WAVE header of n samples of 16-bit mono PCM at `rate`. */
void svc_wav_header(uint8_t out[44], size_t n, int rate);

#endif
