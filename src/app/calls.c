/*
 * Calls on the control loop.
 *
 * The media worker that runs a call is the authority on whether it exists:
 * an entry here is created with the call and freed only when the worker
 * reports MEDIA_EV_ENDED, whoever asked for the end. Between those two
 * moments an entry may lose its WebSocket (the page reloads, the network
 * drops): it is then detached and a timer gives the page resume_timeout_ms
 * to come back with `resume`.
 *
 * Offers are parsed and answered here, on the control loop, since an answer
 * needs only the worker's port, the shared DTLS fingerprint and the new
 * call's ICE credentials. An ICE restart is the exception: the worker owns
 * the ICE agent, so the answer goes out when the worker confirms with
 * MEDIA_EV_RESTARTED. A parsed offer (room for 16 m= sections, some 37 KB)
 * is held only until its answer is sent; what tells a later offer's ICE
 * restart apart, the remote credentials, is kept as a short string.
 *
 * Who may start a call is decided here too, before anything is spent on
 * it: with call_auth resolving to token, a new call needs a call token
 * (app/calltoken.h) from the offer's "token" or the upgrade's ?token=, and
 * the settings it carries win over the page's. Then come the limits: the
 * server's max_calls, and per address the calls at once and new calls a
 * minute (app/iplimit.h). A call lives at most max_call_s, and one whose
 * media does not connect within setup_timeout_ms of its answer is ended, so
 * a caller cannot hold a worker's call slot without using it. Taking a call
 * over with `resume` needs the resume_secret its answer carried, so knowing
 * a call's id (it is in logs and the history) is not enough.
 *
 * A draining server (calls_drain) refuses new calls and keeps everything
 * else: the calls in progress, their resume, their limits. It only tells
 * whoever asked for the drain each time one of them ends, so that the
 * process can stop once none is left.
 *
 * Each connection has a small state of its own (struct conn_state, the
 * ws_conn's data): its call, if any, and the token its upgrade carried.
 */
#include "app/calls.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/voice.h"
#include "app/api.h"
#include "app/callrec.h"
#include "app/calltoken.h"
#include "app/iplimit.h"
#include "cluster/cluster.h"
#include "core/log.h"
#include "core/mailbox.h"
#include "core/pool.h"
#include "core/prom.h"
#include "engines/engines.h"
#include "media/worker.h"
#include "net/hostaddr.h"
#include "net/http_client.h"
#include "rtc/sdp.h"

#define MAX_CANDIDATES 8
#define RESUME_SECRET_BYTES 16
#define IPLIMIT_SWEEP_MS 60000
/* Addresses remembered for the per-address limits, beyond those with a call in progress. */
#define IPLIMIT_IDLE_MAX 65536

/* Why a call was refused before it started, as counted in /metrics. */
enum refusal { REFUSED_UNAUTHORIZED, REFUSED_BUSY, REFUSED_RATE_LIMITED, REFUSED_COUNT };
static const char *const refusal_code[REFUSED_COUNT] = {"unauthorized", "busy", "rate_limited"};

struct resume_lookup;

/* A WebSocket connection's data. */
struct conn_state {
  struct call_entry *call; /* NULL when it has none */
  struct resume_lookup *lookup; /* a resume asked of the cluster; NULL when none */
  char *query_token;       /* ?token= of the upgrade; NULL when none */
  int query_token_too_long;
};

struct call_entry {
  struct call_entry *next;
  struct calls *calls;
  char id[40];
  int worker;
  struct ws_conn *conn;
  uv_timer_t resume_timer;
  uv_timer_t limit_timer;   /* setup_timeout_ms until connected, then max_call_s */
  int open_handles;         /* the timers not closed yet; freed at 0 */
  uint64_t created_ms;
  int connected;
  char resume_secret[2 * RESUME_SECRET_BYTES + 1];
  char ipkey[IPLIMIT_KEY_MAX]; /* counted in calls->iplimit under this; "" when exempt */
  char sub[CALLTOKEN_SUB_MAX]; /* the call token's subject; "" when none */
  int ending;               /* an end was requested; waiting for the worker */
  /* The offer being answered, held only until its answer is sent (a parsed
   * offer is some 37 KB); an ICE restart's offer is held until the worker's
   * new credentials come back and the answer goes out. */
  struct sdp_session *offer;
  char *remote_ice;  /* the offer's "ufrag pwd", what tells a later offer's restart apart */
  int restarts;      /* restarts asked of the worker, not yet answered */
  char held_ufrag[64], held_pwd[64]; /* an ICE restart answered while the page was away */
  uint32_t ssrc;
  struct callrec *rec;
};

struct calls {
  uv_loop_t *loop;
  const struct config *cfg;
  struct mailbox *events;
  struct media_pool *pool;
  struct pool *inference;   /* voice agent only */
  struct engines *engines;  /* voice agent only */
  struct http_client *http; /* voice agent only: requests to AI services */
  struct store *store;      /* NULL when records are off */
  struct callrec_metrics *metrics;
  struct call_entry *list;
  int count;
  int token_auth;           /* call_auth resolved: 1 = a call token is required */
  struct iplimit *iplimit;  /* NULL when neither per-address limit is set */
  uv_timer_t sweep_timer;   /* forgets idle addresses */
  uint64_t refused[REFUSED_COUNT];
  char candidates[MAX_CANDIDATES][64];
  int ncandidates;
  int draining;                            /* no new calls: see calls_drain */
  void (*drain_on_end)(void *user, int left);
  void *drain_user;
  struct cluster *cluster;  /* NULL on a single node */
};

void calls_send(struct ws_conn *conn, json_t *msg) {
  char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
  if (text && conn) ws_conn_send(conn, text, strlen(text));
  free(text);
  json_decref(msg);
}

void calls_send_error(struct ws_conn *conn, const char *code, const char *message) {
  calls_send(conn, json_pack("{s:s,s:s,s:s}", "type", "error", "code", code, "message", message));
}

/* `n` random bytes (at most 32) as hex; RAND_bytes failing leaves nothing guessable: "" */
static void random_hex(char *out, size_t cap, size_t n) {
  unsigned char b[32];
  out[0] = '\0';
  if (n > sizeof b || RAND_bytes(b, (int)n) != 1) return;
  for (size_t i = 0; i < n && 2 * i + 2 < cap; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void calls_refuse(struct calls *calls, struct ws_conn *conn, enum refusal why,
                         const char *message) {
  calls->refused[why]++;
  log_debug("calls", "%s refused (%s): %s", ws_conn_peer(conn), refusal_code[why], message);
  calls_send_error(conn, refusal_code[why], message);
}

/* --- connections --------------------------------------------------------------- */

static struct call_entry *conn_call(const struct ws_conn *conn) {
  struct conn_state *st = ws_conn_data(conn);
  return st ? st->call : NULL;
}

static void conn_set_call(struct ws_conn *conn, struct call_entry *e) {
  struct conn_state *st = ws_conn_data(conn);
  if (st) st->call = e;
}

int calls_open(struct calls *calls, struct ws_conn *conn) {
  struct conn_state *st = calloc(1, sizeof *st);
  if (!st) return -ENOMEM;
  if (calls->token_auth) {
    char buf[CALLTOKEN_MAX + 1];
    int n = ws_conn_query(conn, "token", buf, sizeof buf);
    if (n == -ENOSPC) st->query_token_too_long = 1;
    else if (n >= 0 && !(st->query_token = strdup(buf))) n = -ENOMEM;
    if (n == -ENOMEM) {
      free(st);
      return -ENOMEM;
    }
  }
  ws_conn_set_data(conn, st);
  return 0;
}

static struct call_entry *find(struct calls *calls, const char *id) {
  for (struct call_entry *e = calls->list; e; e = e->next)
    if (strcmp(e->id, id) == 0) return e;
  return NULL;
}

/* --- entries ----------------------------------------------------------------- */

static void on_entry_closed(uv_handle_t *h) {
  struct call_entry *e = h->data;
  if (--e->open_handles > 0) return;
  sdp_session_free(e->offer);
  free(e->remote_ice);
  free(e);
}

static void close_entry(struct call_entry *e) {
  uv_close((uv_handle_t *)&e->resume_timer, on_entry_closed);
  uv_close((uv_handle_t *)&e->limit_timer, on_entry_closed);
}

/* The call no longer counts against its address: as soon as its end is asked for, so that a
 * caller who hangs up can call again at once, without waiting for the worker to confirm. */
static void release_address(struct call_entry *e) {
  if (!e->ipkey[0]) return;
  iplimit_release(e->calls->iplimit, e->ipkey);
  e->ipkey[0] = '\0';
}

static void unlink_entry(struct calls *calls, struct call_entry *e) {
  for (struct call_entry **pp = &calls->list; *pp; pp = &(*pp)->next) {
    if (*pp == e) {
      *pp = e->next;
      calls->count--;
      break;
    }
  }
  if (e->conn) conn_set_call(e->conn, NULL);
  cluster_call_ended(calls->cluster, e->id);
  release_address(e);
  close_entry(e);
}

static void request_end(struct call_entry *e, const char *reason) {
  if (e->ending) return;
  e->ending = 1;
  release_address(e);
  uv_timer_stop(&e->resume_timer);
  uv_timer_stop(&e->limit_timer);
  media_pool_end_call(e->calls->pool, e->worker, e->id, reason);
}

static void on_resume_timeout(uv_timer_t *t) {
  struct call_entry *e = t->data;
  log_call_info("calls", e->id, "no resume within %d ms", e->calls->cfg->resume_timeout_ms);
  request_end(e, "resume timeout");
}

static uint64_t max_call_ms(const struct calls *calls) {
  return (uint64_t)calls->cfg->max_call_s * 1000;
}

/* Setup: the media must connect in time. Afterwards: the call's whole length. */
static void on_limit(uv_timer_t *t) {
  struct call_entry *e = t->data;
  uint64_t age = uv_now(e->calls->loop) - e->created_ms, max = max_call_ms(e->calls);
  if (e->connected || (max && age >= max)) {
    log_call_info("calls", e->id, "reached max_call_s (%d s)", e->calls->cfg->max_call_s);
    request_end(e, "max duration");
  } else {
    log_call_info("calls", e->id, "media did not connect within %d ms of the answer",
                  e->calls->cfg->setup_timeout_ms);
    request_end(e, "setup timeout");
  }
}

static void start_limit_timer(struct call_entry *e) {
  uint64_t first = (uint64_t)e->calls->cfg->setup_timeout_ms, max = max_call_ms(e->calls);
  if (max && max < first) first = max;
  uv_timer_start(&e->limit_timer, on_limit, first, 0);
}

/* Media flows: from now on only max_call_s bounds the call. */
static void on_connected(struct call_entry *e) {
  if (e->connected) return;
  e->connected = 1;
  uv_timer_stop(&e->limit_timer);
  uint64_t age = uv_now(e->calls->loop) - e->created_ms, max = max_call_ms(e->calls);
  if (max && !e->ending) uv_timer_start(&e->limit_timer, on_limit, max > age ? max - age : 0, 0);
}

/* --- SDP -------------------------------------------------------------------------- */

static char *answer_for(struct calls *calls, struct call_entry *e, const char *ufrag,
                        const char *pwd) {
  struct sdp_answer_params ap = {0};
  ap.ice_ufrag = ufrag;
  ap.ice_pwd = pwd;
  ap.fingerprint = media_pool_fingerprint(calls->pool);
  ap.ice_lite = 1; /* we answer checks and never send them: RFC 8445 section 2.5 */
  /* The voice agent hears at 16 kHz: a browser that knows it codes only
   * that band (SILK wideband), cheaper to encode, send and decode. The
   * echo agent plays the caller back and wants the full band. */
  if (calls->engines) ap.max_playback_rate = VOICE_IN_RATE;
  ap.ssrc = e->ssrc;
  ap.cname = e->id;
  ap.port = media_pool_port(calls->pool, e->worker);
  for (int i = 0; i < calls->ncandidates; i++) ap.candidates[i] = calls->candidates[i];
  ap.ncandidates = (size_t)calls->ncandidates;
  char *sdp = NULL;
  if (!e->offer || sdp_build_answer(e->offer, &ap, &sdp) != 0) return NULL;
  return sdp;
}

static void send_answer(struct call_entry *e, const char *ufrag, const char *pwd) {
  char *sdp = answer_for(e->calls, e, ufrag, pwd);
  if (!sdp) {
    calls_send_error(e->conn, "internal", "could not build the answer");
    request_end(e, "internal error");
    return;
  }
  calls_send(e->conn, json_pack("{s:s,s:s,s:s,s:s}", "type", "answer", "sdp", sdp, "call_id",
                                e->id, "resume_secret", e->resume_secret));
  free(sdp);
}

/* An offer's ICE credentials as one string ("ufrag pwd": neither holds a space). */
static char *ice_of(const struct sdp_session *offer) {
  size_t n = strlen(sdp_ice_ufrag(offer)) + strlen(sdp_ice_pwd(offer)) + 2;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s %s", sdp_ice_ufrag(offer), sdp_ice_pwd(offer));
  return s;
}

/* Answered: the offer goes, unless a restart's answer still needs it. */
static void drop_offer(struct call_entry *e) {
  if (e->restarts > 0 || e->held_ufrag[0]) return;
  sdp_session_free(e->offer);
  e->offer = NULL;
}

/* Only services have a model worth recording; the embedded engines have one each. */
static const char *service_model(const char *engine, const char *model) {
  int service = strcmp(engine, "openai") == 0 || strcmp(engine, "anthropic") == 0 ||
                strcmp(engine, "elevenlabs") == 0 || strcmp(engine, "azure") == 0;
  return service && model[0] ? model : NULL;
}

/* The settings the call runs with (the page's, then the token's), as validated: never the
 * raw `config`, whose unknown fields a stranger could fill with anything; and the token's
 * subject. NULL when there is none of these. */
static char *settings_text(const struct voice_settings *s, const char *sub) {
  json_t *o = json_object();
  if (sub[0]) json_object_set_new(o, "token_sub", json_string(sub));
  if (s->language[0]) json_object_set_new(o, "language", json_string(s->language));
  if (s->voice[0]) json_object_set_new(o, "voice", json_string(s->voice));
  if (s->system_prompt[0]) json_object_set_new(o, "system_prompt", json_string(s->system_prompt));
  if (s->has_greeting) json_object_set_new(o, "greeting", json_string(s->greeting));
  if (s->rate) json_object_set_new(o, "rate", json_integer(s->rate));
  char *text = json_object_size(o) ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return text;
}

static void start_record(struct calls *calls, struct call_entry *e, const struct voice_settings *s) {
  const struct config *cfg = calls->cfg;
  char *settings_json = settings_text(s, e->sub);
  const char *language = s->language[0] ? s->language : cfg->language;
  struct callrec_start st = {.id = e->id, .remote_addr = ws_conn_peer(e->conn),
                             .user_agent = ws_conn_user_agent(e->conn), .agent = cfg->agent,
                             .language = language, .settings_json = settings_json};
  if (calls->engines) {
    st.asr = engines_asr_name(calls->engines);
    st.asr_model = service_model(st.asr, cfg->asr_model);
    st.llm = engines_llm_name(calls->engines);
    st.llm_model = service_model(st.llm, cfg->llm_model);
    st.tts = engines_tts_name(calls->engines, language);
    st.tts_model = service_model(st.tts, cfg->tts_model);
    st.tts_voice = s->voice[0] ? s->voice : cfg->tts_voice[0] ? cfg->tts_voice : NULL;
  }
  e->rec = callrec_new(calls->store, calls->metrics, &st);
  free(settings_json);
}

/* Copies an optional string setting; -1 (with `err`) when it is not a fitting string. */
static int setting_string(const json_t *cfg, const char *name, char *out, size_t cap, int *given,
                          char *err, size_t errlen) {
  json_t *v = json_object_get(cfg, name);
  if (!v) return 0;
  if (!json_is_string(v) || json_string_length(v) >= cap) {
    snprintf(err, errlen, "config.%s must be a string of at most %zu bytes", name, cap - 1);
    return -1;
  }
  snprintf(out, cap, "%s", json_string_value(v));
  if (given) *given = 1;
  return 0;
}

static const char *const setting_names[] = {"language", "voice", "system_prompt", "greeting",
                                            "rate", NULL};

/*
 * Applies the settings in `cfg` (an object) over `s`: a field present in
 * `cfg` replaces the one in `s`, the others stay. Unknown fields are
 * ignored from a page (for compatibility) and refused when `strict` (a
 * token's settings, where a misspelt field would silently not hold).
 */
static int apply_settings(const json_t *cfg, struct voice_settings *s, int strict, char *err,
                          size_t errlen) {
  if (!json_is_object(cfg)) return snprintf(err, errlen, "config must be an object"), -1;
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)cfg, key, v) {
    size_t i = 0;
    while (setting_names[i] && strcmp(setting_names[i], key) != 0) i++;
    if (strict && !setting_names[i])
      return snprintf(err, errlen, "unknown setting \"%.40s\"", key), -1;
  }
  char language[sizeof s->language] = "";
  int has_language = 0;
  if (setting_string(cfg, "language", language, sizeof language, &has_language, err, errlen) ||
      setting_string(cfg, "voice", s->voice, sizeof s->voice, NULL, err, errlen) ||
      setting_string(cfg, "system_prompt", s->system_prompt, 4001, NULL, err, errlen) ||
      setting_string(cfg, "greeting", s->greeting, 1001, &s->has_greeting, err, errlen))
    return -1;
  for (const char *p = language; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
      return snprintf(err, errlen, "config.language must look like en, zh or pt-BR"), -1;
  if (has_language) memcpy(s->language, language, sizeof language);
  json_t *rate = json_object_get(cfg, "rate");
  if (rate && (!json_is_integer(rate) || json_integer_value(rate) < 50 ||
               json_integer_value(rate) > 300))
    return snprintf(err, errlen, "config.rate must be an integer from 50 to 300"), -1;
  if (rate) s->rate = (int)json_integer_value(rate);
  return 0;
}

int calls_check_settings(const json_t *settings, char *err, size_t errlen) {
  struct voice_settings s;
  memset(&s, 0, sizeof s);
  return apply_settings(settings, &s, 1, err, errlen) ? -EINVAL : 0;
}

/* The per-call settings of an offer's `config`; -1 (after telling the page) when bad. */
static int parse_settings(struct ws_conn *conn, json_t *msg, struct voice_settings *s) {
  json_t *cfg = json_object_get(msg, "config");
  char err[160];
  if (!cfg || json_is_null(cfg)) return 0;
  if (apply_settings(cfg, s, 0, err, sizeof err)) {
    calls_send_error(conn, "bad_message", err);
    return -1;
  }
  return 0;
}

/* Parses the offer in `msg`; on failure answers with an error and returns NULL. */
static struct sdp_session *parse_offer(struct ws_conn *conn, json_t *msg) {
  const char *text = json_string_value(json_object_get(msg, "sdp"));
  if (!text) {
    calls_send_error(conn, "bad_message", "an offer needs a string field \"sdp\"");
    return NULL;
  }
  char err[256];
  struct sdp_session *s = NULL;
  if (sdp_parse(text, strlen(text), &s, err, sizeof err) != 0) {
    calls_send_error(conn, "bad_sdp", err);
    return NULL;
  }
  return s;
}

/* --- signaling ------------------------------------------------------------------------ */

/* What a new call takes from its admission: the token's subject and the address it counts under. */
struct admission {
  char sub[CALLTOKEN_SUB_MAX];
  char ipkey[IPLIMIT_KEY_MAX];
};

static void new_call(struct calls *calls, struct ws_conn *conn, struct sdp_session *offer,
                     const struct voice_settings *settings, const struct admission *adm) {
  struct call_entry *e = calloc(1, sizeof *e);
  if (!e) {
    sdp_session_free(offer);
    if (adm->ipkey[0]) iplimit_release(calls->iplimit, adm->ipkey);
    calls_send_error(conn, "internal", "out of memory");
    return;
  }
  e->calls = calls;
  e->offer = offer;
  e->remote_ice = ice_of(offer);
  if (!e->remote_ice) {
    sdp_session_free(offer);
    free(e);
    if (adm->ipkey[0]) iplimit_release(calls->iplimit, adm->ipkey);
    calls_send_error(conn, "internal", "out of memory");
    return;
  }
  e->conn = conn;
  random_hex(e->id, sizeof e->id, 8);
  random_hex(e->resume_secret, sizeof e->resume_secret, RESUME_SECRET_BYTES);
  memcpy(e->sub, adm->sub, sizeof e->sub);
  memcpy(e->ipkey, adm->ipkey, sizeof e->ipkey);
  RAND_bytes((unsigned char *)&e->ssrc, sizeof e->ssrc);
  e->worker = media_pool_pick(calls->pool);
  e->created_ms = uv_now(calls->loop);
  uv_timer_init(calls->loop, &e->resume_timer);
  uv_timer_init(calls->loop, &e->limit_timer);
  e->resume_timer.data = e->limit_timer.data = e;
  e->open_handles = 2;

  struct media_call_params p = {0};
  p.settings = *settings;
  snprintf(p.call_id, sizeof p.call_id, "%s", e->id);
  snprintf(p.remote_ufrag, sizeof p.remote_ufrag, "%s", sdp_ice_ufrag(offer));
  snprintf(p.remote_pwd, sizeof p.remote_pwd, "%s", sdp_ice_pwd(offer));
  snprintf(p.remote_fp_alg, sizeof p.remote_fp_alg, "%s", sdp_fingerprint_alg(offer));
  snprintf(p.remote_fp, sizeof p.remote_fp, "%s", sdp_fingerprint(offer));
  p.opus_pt = sdp_opus_pt(offer);
  p.ssrc = e->ssrc;
  p.ice_timeout_ms = calls->cfg->ice_timeout_ms;
  char ufrag[64], pwd[64];
  if (media_pool_add_call(calls->pool, e->worker, &p, ufrag, sizeof ufrag, pwd, sizeof pwd)) {
    calls_send_error(conn, "internal", "could not create the call");
    release_address(e);
    close_entry(e);
    return;
  }
  e->next = calls->list;
  calls->list = e;
  calls->count++;
  conn_set_call(conn, e);
  cluster_call_started(calls->cluster, e->id);
  start_record(calls, e, settings);
  if (e->sub[0])
    log_call_info("calls", e->id, "from %s (token sub \"%s\") on worker %d", ws_conn_peer(conn),
                  e->sub, e->worker);
  else
    log_call_info("calls", e->id, "from %s on worker %d", ws_conn_peer(conn), e->worker);
  start_limit_timer(e);
  send_answer(e, ufrag, pwd);
  drop_offer(e);
}

/* An offer on an existing call: an ICE restart when the credentials changed. */
static void renegotiate(struct call_entry *e, struct sdp_session *offer) {
  char *ice = ice_of(offer);
  if (!ice || strcmp(ice, e->remote_ice) == 0) {
    free(ice);
    sdp_session_free(offer);
    if (ice) calls_send_error(e->conn, "bad_sdp", "only ICE restarts can renegotiate a call");
    else calls_send_error(e->conn, "internal", "out of memory");
    return;
  }
  free(e->remote_ice);
  e->remote_ice = ice;
  sdp_session_free(e->offer); /* an earlier restart's answer is built from this one too */
  e->offer = offer;
  e->restarts++;
  log_call_info("calls", e->id, "ICE restart");
  media_pool_restart_ice(e->calls->pool, e->worker, e->id, sdp_ice_ufrag(offer), sdp_ice_pwd(offer));
}

/*
 * The call token of a new call, when one is required: the offer's "token",
 * else the upgrade's ?token=. 0 with *tok filled (calltoken_clear it), or -1
 * after refusing the call.
 */
static int check_token(struct calls *calls, struct ws_conn *conn, json_t *msg,
                       struct calltoken *tok) {
  memset(tok, 0, sizeof *tok);
  if (!calls->token_auth) return 0;
  struct conn_state *st = ws_conn_data(conn);
  json_t *field = json_object_get(msg, "token");
  const char *text = field ? json_string_value(field) : st ? st->query_token : NULL;
  char err[200];
  if (field && !text) {
    calls_refuse(calls, conn, REFUSED_UNAUTHORIZED, "\"token\" must be a string");
    return -1;
  }
  if (!field && st && st->query_token_too_long) {
    snprintf(err, sizeof err, "malformed call token: longer than %d bytes", CALLTOKEN_MAX);
    calls_refuse(calls, conn, REFUSED_UNAUTHORIZED, err);
    return -1;
  }
  if (!text) {
    calls_refuse(calls, conn, REFUSED_UNAUTHORIZED,
                 "this server needs a call token: \"token\" in the offer or ?token= on /ws");
    return -1;
  }
  size_t len = field ? json_string_length(field) : strlen(text);
  if (calltoken_verify(calls->cfg->call_secret, text, len, (int64_t)time(NULL), tok, err,
                       sizeof err)) {
    calls_refuse(calls, conn, REFUSED_UNAUTHORIZED, err);
    return -1;
  }
  return 0;
}

/* The page's settings, then the token's over them: a field the token sets is not the page's to choose. */
static int call_settings(struct calls *calls, struct ws_conn *conn, json_t *msg,
                         const struct calltoken *tok, struct voice_settings *s) {
  if (parse_settings(conn, msg, s)) return -1;
  char err[160], why[220];
  if (tok->settings && apply_settings(tok->settings, s, 1, err, sizeof err)) {
    snprintf(why, sizeof why, "the call token's settings are not valid: %s", err);
    calls_refuse(calls, conn, REFUSED_UNAUTHORIZED, why);
    return -1;
  }
  return 0;
}

/* Counts the call against its address; -1 after refusing it. Loopback is exempt unless limit_loopback. */
static int check_address(struct calls *calls, struct ws_conn *conn, struct admission *adm) {
  adm->ipkey[0] = '\0';
  const char *peer = ws_conn_peer(conn);
  if (!calls->iplimit || (!calls->cfg->limit_loopback && api_is_loopback(peer))) return 0;
  char key[IPLIMIT_KEY_MAX], msg[200];
  if (iplimit_key(peer, key, sizeof key)) return 0; /* not an IP address: nothing to count by */
  int rc = iplimit_acquire(calls->iplimit, key, uv_now(calls->loop));
  if (rc == 0) {
    memcpy(adm->ipkey, key, sizeof key);
    return 0;
  }
  if (rc == -EBUSY) {
    snprintf(msg, sizeof msg, "too many calls from your address at once (%d); hang one up first",
             calls->cfg->max_calls_per_ip);
    calls_refuse(calls, conn, REFUSED_BUSY, msg);
  } else if (rc == -EAGAIN) {
    snprintf(msg, sizeof msg, "too many new calls from your address (%d a minute); try again later",
             calls->cfg->max_calls_per_ip_per_min);
    calls_refuse(calls, conn, REFUSED_RATE_LIMITED, msg);
  } else {
    calls_refuse(calls, conn, REFUSED_BUSY, "the server is at its call limit; try again later");
  }
  return -1;
}

/*
 * Cluster mode (docs/cluster.md): a new call that another node should take
 * is answered with a redirect there; 1 when the offer is answered so. An
 * offer that was redirected already is placed here (no ping-pong). The
 * token is checked first, so that a stranger is refused where they knock.
 */
static int place_elsewhere(struct calls *calls, struct ws_conn *conn, json_t *msg) {
  if (!calls->cluster || json_is_true(json_object_get(msg, "redirected"))) return 0;
  struct calltoken tok;
  if (check_token(calls, conn, msg, &tok)) return 1;
  calltoken_clear(&tok);
  char url[1024];
  enum cluster_placement where = cluster_place(calls->cluster, url, sizeof url);
  if (where == CLUSTER_HERE) return 0;
  if (where == CLUSTER_FULL) {
    calls_refuse(calls, conn, REFUSED_BUSY, "every server of the cluster is at its call limit; "
                                            "try again later");
    return 1;
  }
  log_debug("calls", "%s redirected to %s", ws_conn_peer(conn), url);
  cluster_count_redirect(calls->cluster, "placement");
  calls_send(conn, json_pack("{s:s,s:s,s:s}", "type", "redirect", "url", url, "reason",
                             "placement"));
  return 1;
}

static void offer_new_call(struct calls *calls, struct ws_conn *conn, json_t *msg) {
  if (!ws_conn_data(conn)) { /* calls_open failed: the connection is closing */
    calls_send_error(conn, "internal", "out of memory");
    return;
  }
  if (place_elsewhere(calls, conn, msg)) return;
  if (calls->draining) { /* a placement elsewhere, in a cluster, goes before this refusal */
    calls_refuse(calls, conn, REFUSED_BUSY, "this server is draining and takes no new calls; "
                                            "call again to reach another server");
    return;
  }
  if (calls->count >= calls->cfg->max_calls) {
    calls_refuse(calls, conn, REFUSED_BUSY, "the server is at its call limit; try again later");
    return;
  }
  struct calltoken tok;
  if (check_token(calls, conn, msg, &tok)) return;
  struct voice_settings settings;
  memset(&settings, 0, sizeof settings);
  struct admission adm;
  memset(&adm, 0, sizeof adm);
  snprintf(adm.sub, sizeof adm.sub, "%s", tok.sub);
  int rc = call_settings(calls, conn, msg, &tok, &settings);
  calltoken_clear(&tok);
  if (rc) return;
  struct sdp_session *offer = parse_offer(conn, msg);
  if (!offer) return;
  if (check_address(calls, conn, &adm)) {
    sdp_session_free(offer);
    return;
  }
  new_call(calls, conn, offer, &settings, &adm);
}

void calls_offer(struct calls *calls, struct ws_conn *conn, json_t *msg) {
  struct call_entry *current = conn_call(conn);
  json_t *jid = json_object_get(msg, "call_id");
  if (jid && !json_is_string(jid)) {
    calls_send_error(conn, "bad_message", "\"call_id\" must be a string");
    return;
  }
  if (jid && (!current || strcmp(current->id, json_string_value(jid)) != 0)) {
    calls_send_error(conn, "unknown_call", "no call with that id on this connection");
    return;
  }
  if (!jid && current) {
    calls_send_error(conn, "in_call", "this connection already has a call; hang up first");
    return;
  }
  if (!jid) {
    offer_new_call(calls, conn, msg);
    return;
  }
  struct sdp_session *offer = parse_offer(conn, msg);
  if (offer) renegotiate(current, offer);
}

void calls_hangup(struct calls *calls, struct ws_conn *conn) {
  struct call_entry *e = conn_call(conn);
  if (!e) {
    calls_send_error(conn, "no_call", "there is no call on this connection to hang up");
    return;
  }
  calls_send(conn, json_pack("{s:s,s:s,s:s}", "type", "end", "reason", "hangup", "call_id", e->id));
  e->conn = NULL;
  conn_set_call(conn, NULL);
  request_end(e, "hangup");
}

void calls_candidate(struct calls *calls, struct ws_conn *conn) {
  /* ICE-lite: the browser's address is learnt from its checks, so candidates are not needed. */
  if (!conn_call(conn))
    calls_send_error(conn, "no_call", "there is no call on this connection for this candidate");
}

/* A resume asked of the cluster: `conn` is cleared if the connection goes away first. */
struct resume_lookup {
  struct ws_conn *conn;
  struct cluster *cluster;
};

static void on_resume_located(void *arg, const char *url) {
  struct resume_lookup *lo = arg;
  struct conn_state *st = lo->conn ? ws_conn_data(lo->conn) : NULL;
  if (st) st->lookup = NULL;
  if (lo->conn && url) {
    cluster_count_redirect(lo->cluster, "resume");
    calls_send(lo->conn, json_pack("{s:s,s:s,s:s}", "type", "redirect", "url", url, "reason",
                                   "resume"));
  } else if (lo->conn) {
    calls_send_error(lo->conn, "unknown_call", "no detached call with that id");
  }
  free(lo);
}

/* Cluster mode: a call this node does not hold may run on another; 1 when the answer will
 * come from the lookup (a redirect to it, or unknown_call). The node that holds the call
 * checks the resume_secret. */
static int resume_elsewhere(struct calls *calls, struct ws_conn *conn, const char *id) {
  struct conn_state *st = ws_conn_data(conn);
  if (!calls->cluster || !st || st->call || st->lookup || strlen(id) >= sizeof st->call->id)
    return 0;
  struct resume_lookup *lo = calloc(1, sizeof *lo);
  if (!lo) return 0;
  *lo = (struct resume_lookup){conn, calls->cluster};
  if (cluster_locate(calls->cluster, id, on_resume_located, lo)) {
    free(lo);
    return 0;
  }
  st->lookup = lo;
  return 1;
}

void calls_resume(struct calls *calls, struct ws_conn *conn, json_t *msg) {
  const char *id = json_string_value(json_object_get(msg, "call_id"));
  json_t *jsecret = json_object_get(msg, "resume_secret");
  const char *secret = json_string_value(jsecret);
  if (!id) {
    calls_send_error(conn, "bad_message", "resume needs a string \"call_id\"");
    return;
  }
  struct call_entry *e = find(calls, id);
  if (!e) {
    if (!resume_elsewhere(calls, conn, id))
      calls_send_error(conn, "unknown_call", "no detached call with that id");
    return;
  }
  size_t want = strlen(e->resume_secret);
  if (!secret || json_string_length(jsecret) != want || want == 0 ||
      CRYPTO_memcmp(secret, e->resume_secret, want) != 0) {
    log_call_info("calls", e->id, "resume from %s refused: %s resume_secret", ws_conn_peer(conn),
                  secret ? "wrong" : "no");
    calls_send_error(conn, "unauthorized",
                     secret ? "wrong resume_secret for this call"
                            : "resume needs the call's \"resume_secret\" from its answer");
    return;
  }
  if (e->ending || e->conn || conn_call(conn)) {
    calls_send_error(conn, "unknown_call", "no detached call with that id");
    return;
  }
  uv_timer_stop(&e->resume_timer);
  e->conn = conn;
  conn_set_call(conn, e);
  log_call_info("calls", e->id, "resumed from %s", ws_conn_peer(conn));
  calls_send(conn, json_pack("{s:s,s:s}", "type", "resumed", "call_id", e->id));
  if (e->held_ufrag[0]) {
    send_answer(e, e->held_ufrag, e->held_pwd);
    e->held_ufrag[0] = e->held_pwd[0] = '\0';
    drop_offer(e);
  }
}

void calls_detach(struct calls *calls, struct ws_conn *conn) {
  struct conn_state *st = ws_conn_data(conn);
  struct call_entry *e = st ? st->call : NULL;
  ws_conn_set_data(conn, NULL);
  if (st && st->lookup) st->lookup->conn = NULL; /* its answer has no one to go to */
  if (st) {
    free(st->query_token);
    free(st);
  }
  if (!e) return;
  e->conn = NULL;
  if (e->ending) return;
  log_call_info("calls", e->id, "page disconnected; waiting %d ms for it",
           calls->cfg->resume_timeout_ms);
  uv_timer_start(&e->resume_timer, on_resume_timeout, (uint64_t)calls->cfg->resume_timeout_ms, 0);
}

int calls_count(const struct calls *calls) { return calls->count; }
int calls_draining(const struct calls *calls) { return calls->draining; }

void calls_drain(struct calls *calls, void (*on_end)(void *user, int left), void *user) {
  calls->draining = 1;
  calls->drain_on_end = on_end;
  calls->drain_user = user;
}
struct media_pool *calls_pool(const struct calls *calls) { return calls->pool; }
struct http_client *calls_http(const struct calls *calls) { return calls->http; }
struct engines *calls_engines(const struct calls *calls) { return calls->engines; }

void calls_write_metrics(const struct calls *calls, struct prom_buf *b) {
  callrec_metrics_write(calls->metrics, calls->count, b);
  prom_family(b, "tingshuo_calls_refused_total", "counter",
              "New calls refused before they started, by the error code the caller got.");
  for (int i = 0; i < REFUSED_COUNT; i++)
    prom_sample(b, "tingshuo_calls_refused_total", (double)calls->refused[i], "code",
                refusal_code[i], NULL);
  prom_family(b, "tingshuo_draining", "gauge",
              "1 while the server drains: it takes no new calls and exits once those in "
              "progress have ended or drain_timeout_s has passed.");
  prom_sample(b, "tingshuo_draining", calls->draining, NULL);
  if (calls->cluster) cluster_write_metrics(calls->cluster, b);
}

static int cluster_calls(void *user) { return calls_count(user); }
static int cluster_draining(void *user) { return calls_draining(user); }

static void cluster_each_call(void *user, struct cluster *cl,
                              void (*emit)(struct cluster *, const char *)) {
  struct calls *calls = user;
  for (struct call_entry *e = calls->list; e; e = e->next)
    if (!e->ending) emit(cl, e->id);
}

void calls_set_cluster(struct calls *calls, struct cluster *cluster) {
  calls->cluster = cluster;
  struct cluster_local local = {.user = calls, .calls = cluster_calls,
                                .draining = cluster_draining, .each_call = cluster_each_call};
  cluster_set_local(cluster, &local);
}

static void free_msg(struct mailbox_msg *m) { media_event_free((struct media_event *)m); }

/* --- events from the media workers ------------------------------------------------------------ */

static void on_media_event(struct mailbox *mb, struct mailbox_msg *m, void *user) {
  struct calls *calls = user;
  struct media_event *ev = (struct media_event *)m;
  struct call_entry *e = find(calls, ev->call_id);
  if (e) {
    switch (ev->hdr.type) {
    case MEDIA_EV_CONNECTED:
      on_connected(e);
      callrec_connected(e->rec);
      calls_send(e->conn, json_pack("{s:s,s:s}", "type", "connected", "call_id", e->id));
      break;
    case MEDIA_EV_RESTARTED:
      if (e->restarts > 0) e->restarts--;
      if (e->conn) {
        send_answer(e, ev->ufrag, ev->pwd);
        drop_offer(e);
      } else { /* the page went away meanwhile: it gets the answer when it resumes */
        snprintf(e->held_ufrag, sizeof e->held_ufrag, "%s", ev->ufrag);
        snprintf(e->held_pwd, sizeof e->held_pwd, "%s", ev->pwd);
      }
      break;
    case MEDIA_EV_ENDED:
      if (e->conn && strcmp(ev->reason, "hangup") != 0)
        calls_send(e->conn, json_pack("{s:s,s:s,s:s}", "type", "end", "reason", ev->reason,
                                      "call_id", e->id));
      callrec_end(e->rec, ev->reason, &ev->summary);
      e->rec = NULL;
      unlink_entry(calls, e);
      if (calls->draining && calls->drain_on_end)
        calls->drain_on_end(calls->drain_user, calls->count);
      break;
    case MEDIA_EV_AGENT:
      callrec_agent_event(e->rec, ev->json);
      if (e->conn && ev->json) ws_conn_send(e->conn, ev->json, strlen(ev->json));
      break;
    }
  }
  media_event_free(ev);
}

/* --- set-up ------------------------------------------------------------------------------------ */

static void add_candidate(struct calls *calls, const char *ip) {
  if (calls->ncandidates < MAX_CANDIDATES)
    snprintf(calls->candidates[calls->ncandidates++], sizeof calls->candidates[0], "%.63s", ip);
}

/* announce_address, else media_address, else (wildcard) every interface's address: see
 * net/hostaddr.h for which and in what order. */
static void find_candidates(struct calls *calls) {
  const struct config *cfg = calls->cfg;
  if (cfg->announce_address[0]) {
    char list[1024];
    snprintf(list, sizeof list, "%s", cfg->announce_address);
    for (char *save, *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
      add_candidate(calls, tok);
    return;
  }
  int wildcard = strcmp(cfg->media_address, "0.0.0.0") == 0 || strcmp(cfg->media_address, "::") == 0;
  if (!wildcard) {
    add_candidate(calls, cfg->media_address);
    return;
  }
  uv_interface_address_t *ifs;
  int n;
  if (uv_interface_addresses(&ifs, &n) != 0) return;
  calls->ncandidates = hostaddr_pick(ifs, n, strcmp(cfg->media_address, "::") == 0,
                                     calls->candidates, MAX_CANDIDATES);
  uv_free_interface_addresses(ifs, n);
}

/* Which addresses browsers are offered, once at start: the first thing to check when a
 * browser cannot connect. Firefox uses no loopback candidate, so a list of loopback
 * addresses alone works for Chromium on this machine and for nothing else. */
static void log_candidates(const struct calls *calls) {
  char list[MAX_CANDIDATES * 66] = "";
  size_t len = 0;
  int loopback = 0;
  for (int i = 0; i < calls->ncandidates && len < sizeof list; i++) {
    len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "",
                            calls->candidates[i]);
    loopback += api_is_loopback(calls->candidates[i]);
  }
  if (!calls->ncandidates) log_warn("media", "no address to offer browsers: set announce_address");
  else if (loopback == calls->ncandidates)
    log_warn("media", "candidates offered to browsers: %s (loopback only: Firefox cannot connect; "
             "media_address = 0.0.0.0 offers every interface)", list);
  else log_info("media", "candidates offered to browsers: %s", list);
}

static int open_engines(struct calls *calls, char *err, size_t errlen) {
  int threads = calls->cfg->inference_threads ? calls->cfg->inference_threads
                                              : (int)uv_available_parallelism();
  int rc = pool_new(&calls->inference, threads);
  if (rc) {
    snprintf(err, errlen, "cannot start %d inference threads", threads);
    return rc;
  }
  struct http_client_opts o;
  http_client_opts_from_config(&o, calls->cfg);
  rc = http_client_new(&calls->http, calls->loop, &o);
  if (rc) {
    snprintf(err, errlen, "cannot start the HTTP client for AI services");
    return rc;
  }
  struct engine_env env = {calls->cfg, calls->inference, calls->events, calls->http};
  rc = engines_open(&calls->engines, &env, err, errlen);
  if (rc) return rc;
  log_info("agent", "voice agent: asr %s, llm %s, tts %s (%d inference threads)",
           engines_asr_name(calls->engines), engines_llm_name(calls->engines),
           engines_tts_name(calls->engines, calls->cfg->language), threads);
  voice_agent_warm(calls->engines, calls->cfg); /* in the background: no call waits for it */
  return 0;
}

/* Engines are closed only once nothing can use them: no worker, no inference thread. */
static void close_engines(struct calls *calls) {
  if (calls->inference) pool_stop(calls->inference);
  engines_close(calls->engines);
  calls->engines = NULL;
  /* Ends transfers in flight without posting anything back to the workers. */
  http_client_free(calls->http);
  calls->http = NULL;
  pool_free(calls->inference);
  calls->inference = NULL;
}

/* Strangers can reach /ws: listen or https_listen is not loopback. */
static int reachable(const struct config *cfg) {
  return !api_host_is_loopback(cfg->listen) ||
         (cfg->https_listen[0] && !api_host_is_loopback(cfg->https_listen));
}

int calls_token_auth(const struct config *cfg) {
  if (strcmp(cfg->call_auth, "token") == 0) return 1;
  if (strcmp(cfg->call_auth, "none") == 0) return 0;
  return reachable(cfg);
}

/* Who may call, decided once at start: refuses to run token auth without a usable secret. */
static int setup_access(struct calls *calls, char *err, size_t errlen) {
  const struct config *cfg = calls->cfg;
  calls->token_auth = calls_token_auth(cfg);
  if (calls->token_auth && !calltoken_secret_ok(cfg->call_secret)) {
    snprintf(err, errlen,
             "call_auth is %s%s, which needs call_secret (at least 16 characters; set "
             "TINGSHUO_CALL_SECRET), or call_auth = none to let anyone who reaches /ws call",
             cfg->call_auth, strcmp(cfg->call_auth, "auto") == 0 ? " (token: a listener is not loopback)" : "");
    return -EINVAL;
  }
  if (calls->token_auth)
    log_info("calls", "call_auth token: a call needs a call token signed with call_secret");
  else if (reachable(cfg))
    log_warn("calls", "call_auth = %s on a non-loopback address: ANYONE who reaches this "
                      "server can start calls and spend its AI services' money; set call_auth = "
                      "token and call_secret for a server others can reach", cfg->call_auth);
  int rc = 0;
  if (cfg->max_calls_per_ip || cfg->max_calls_per_ip_per_min)
    rc = iplimit_new(&calls->iplimit, cfg->max_calls_per_ip, cfg->max_calls_per_ip_per_min,
                     (size_t)cfg->max_calls + IPLIMIT_IDLE_MAX);
  if (rc) snprintf(err, errlen, "out of memory");
  return rc;
}

static void on_sweep(uv_timer_t *t) {
  struct calls *calls = t->data;
  iplimit_sweep(calls->iplimit, uv_now(calls->loop));
}

int calls_mint_token(const struct config *cfg, int64_t now, long ttl_s, const char *sub,
                     const json_t *settings, char **token, int64_t *exp, char *err,
                     size_t errlen) {
  *token = NULL;
  if (!calltoken_secret_ok(cfg->call_secret)) {
    snprintf(err, errlen, "no call_secret is set (at least 16 characters; TINGSHUO_CALL_SECRET)");
    return -ENOKEY;
  }
  if (ttl_s < 1 || ttl_s > CALLTOKEN_TTL_MAX) {
    snprintf(err, errlen, "ttl must be from 1 to %d seconds", CALLTOKEN_TTL_MAX);
    return -EINVAL;
  }
  size_t n = sub ? strlen(sub) : 0;
  for (size_t i = 0; i < n; i++)
    if (sub[i] < 0x20 || sub[i] > 0x7e) n = CALLTOKEN_SUB_MAX;
  if (sub && (n == 0 || n >= CALLTOKEN_SUB_MAX)) {
    snprintf(err, errlen, "sub must be 1 to %d printable ASCII characters", CALLTOKEN_SUB_MAX - 1);
    return -EINVAL;
  }
  char why[160];
  if (settings && calls_check_settings(settings, why, sizeof why)) {
    snprintf(err, errlen, "settings: %s", why);
    return -EINVAL;
  }
  *exp = now + ttl_s;
  int rc = calltoken_mint(cfg->call_secret, *exp, sub, settings, token);
  if (rc == -EINVAL) snprintf(err, errlen, "the settings make the token longer than %d bytes",
                              CALLTOKEN_MAX);
  else if (rc) snprintf(err, errlen, "out of memory");
  return rc;
}

int calls_new(struct calls **out, uv_loop_t *loop, const struct config *cfg, struct store *store,
              char *err, size_t errlen) {
  struct calls *calls = calloc(1, sizeof *calls);
  if (!calls) return -ENOMEM;
  calls->loop = loop;
  calls->cfg = cfg;
  calls->store = store;
  int rc = setup_access(calls, err, errlen);
  if (rc == 0) rc = callrec_metrics_new(&calls->metrics);
  if (rc == 0) callrec_metrics_set_prices(calls->metrics, cfg);
  if (rc == 0) rc = mailbox_new(&calls->events, loop, on_media_event, calls);
  if (rc == 0 && strcmp(cfg->agent, "voice") == 0) rc = open_engines(calls, err, errlen);
  if (rc == 0)
    rc = media_pool_start(&calls->pool, cfg, calls->events, calls->engines, err, errlen);
  if (rc) {
    close_engines(calls);
    if (calls->events) mailbox_close(calls->events, free_msg);
    callrec_metrics_free(calls->metrics);
    iplimit_free(calls->iplimit);
    free(calls);
    return rc;
  }
  uv_timer_init(loop, &calls->sweep_timer);
  calls->sweep_timer.data = calls;
  if (calls->iplimit) uv_timer_start(&calls->sweep_timer, on_sweep, IPLIMIT_SWEEP_MS, IPLIMIT_SWEEP_MS);
  uv_unref((uv_handle_t *)&calls->sweep_timer);
  find_candidates(calls);
  log_candidates(calls);
  for (int i = 0; i < media_pool_size(calls->pool); i++)
    log_info("media", "worker %d on UDP port %d", i, media_pool_port(calls->pool, i));
  *out = calls;
  return 0;
}

void calls_shutdown(struct calls *calls) {
  if (!calls || !calls->pool) return;
  /* Inference threads post results to the workers' mailboxes: they stop first. */
  if (calls->inference) pool_stop(calls->inference);
  media_pool_stop(calls->pool); /* workers end their calls without events */
  calls->pool = NULL;
  close_engines(calls);
  while (calls->list) {
    struct call_entry *e = calls->list;
    if (e->conn)
      calls_send(e->conn, json_pack("{s:s,s:s,s:s}", "type", "end", "reason",
                                    "server shutting down", "call_id", e->id));
    if (e->conn) ws_conn_close(e->conn); /* after the end is written, not when the server stops */
    callrec_end(e->rec, "server shutting down", NULL);
    e->rec = NULL;
    unlink_entry(calls, e);
  }
  /* No worker is left to post: closing the mailbox lets the loop end. */
  mailbox_close(calls->events, free_msg);
  calls->events = NULL;
  uv_close((uv_handle_t *)&calls->sweep_timer, NULL);
}

void calls_free(struct calls *calls) {
  if (!calls) return;
  calls_shutdown(calls);
  callrec_metrics_free(calls->metrics);
  iplimit_free(calls->iplimit);
  free(calls);
}
