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
 * MEDIA_EV_RESTARTED.
 */
#include "app/calls.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "agent/voice.h"
#include "app/callrec.h"
#include "core/log.h"
#include "core/mailbox.h"
#include "core/pool.h"
#include "engines/engines.h"
#include "media/worker.h"
#include "net/http_client.h"
#include "rtc/sdp.h"

#define MAX_CANDIDATES 8

struct call_entry {
  struct call_entry *next;
  struct calls *calls;
  char id[40];
  int worker;
  struct ws_conn *conn;
  uv_timer_t resume_timer;
  int ending;               /* an end was requested; waiting for the worker */
  struct sdp_session *offer; /* the offer being answered (kept for ICE restarts) */
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
  char candidates[MAX_CANDIDATES][64];
  int ncandidates;
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

static void random_id(char *out, size_t cap) {
  unsigned char b[8];
  RAND_bytes(b, sizeof b);
  for (size_t i = 0; i < sizeof b && 2 * i + 2 < cap; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static struct call_entry *find(struct calls *calls, const char *id) {
  for (struct call_entry *e = calls->list; e; e = e->next)
    if (strcmp(e->id, id) == 0) return e;
  return NULL;
}

/* --- entries ----------------------------------------------------------------- */

static void on_entry_closed(uv_handle_t *h) {
  struct call_entry *e = h->data;
  sdp_session_free(e->offer);
  free(e);
}

static void unlink_entry(struct calls *calls, struct call_entry *e) {
  for (struct call_entry **pp = &calls->list; *pp; pp = &(*pp)->next) {
    if (*pp == e) {
      *pp = e->next;
      calls->count--;
      break;
    }
  }
  if (e->conn) ws_conn_set_data(e->conn, NULL);
  uv_close((uv_handle_t *)&e->resume_timer, on_entry_closed);
}

static void request_end(struct call_entry *e, const char *reason) {
  if (e->ending) return;
  e->ending = 1;
  uv_timer_stop(&e->resume_timer);
  media_pool_end_call(e->calls->pool, e->worker, e->id, reason);
}

static void on_resume_timeout(uv_timer_t *t) {
  struct call_entry *e = t->data;
  log_call_info("calls", e->id, "no resume within %d ms", e->calls->cfg->resume_timeout_ms);
  request_end(e, "resume timeout");
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
  if (sdp_build_answer(e->offer, &ap, &sdp) != 0) return NULL;
  return sdp;
}

static void send_answer(struct call_entry *e, const char *ufrag, const char *pwd) {
  char *sdp = answer_for(e->calls, e, ufrag, pwd);
  if (!sdp) {
    calls_send_error(e->conn, "internal", "could not build the answer");
    request_end(e, "internal error");
    return;
  }
  calls_send(e->conn, json_pack("{s:s,s:s,s:s}", "type", "answer", "sdp", sdp, "call_id", e->id));
  free(sdp);
}

/* Only services have a model worth recording; the embedded engines have one each. */
static const char *service_model(const char *engine, const char *model) {
  int service = strcmp(engine, "openai") == 0 || strcmp(engine, "anthropic") == 0 ||
                strcmp(engine, "elevenlabs") == 0 || strcmp(engine, "azure") == 0;
  return service && model[0] ? model : NULL;
}

/* The settings the page chose, as validated: never the raw `config`, whose unknown
 * fields a stranger could fill with anything. NULL when it chose none. */
static char *settings_text(const struct voice_settings *s) {
  json_t *o = json_object();
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
  char *settings_json = settings_text(s);
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

/* Copies an optional string setting; -1 (after telling the page) when it is not a fitting string. */
static int setting_string(struct ws_conn *conn, json_t *cfg, const char *name, char *out, size_t cap,
                          int *given) {
  json_t *v = json_object_get(cfg, name);
  if (!v) return 0;
  char msg[160];
  if (!json_is_string(v) || json_string_length(v) >= cap) {
    snprintf(msg, sizeof msg, "config.%s must be a string of at most %zu bytes", name, cap - 1);
    calls_send_error(conn, "bad_message", msg);
    return -1;
  }
  snprintf(out, cap, "%s", json_string_value(v));
  if (given) *given = 1;
  return 0;
}

/* The per-call settings of an offer's `config`; -1 (after telling the page) when bad. */
static int parse_settings(struct ws_conn *conn, json_t *msg, struct voice_settings *s) {
  json_t *cfg = json_object_get(msg, "config");
  if (!cfg || json_is_null(cfg)) return 0;
  if (!json_is_object(cfg)) {
    calls_send_error(conn, "bad_message", "config must be an object");
    return -1;
  }
  if (setting_string(conn, cfg, "language", s->language, sizeof s->language, NULL) ||
      setting_string(conn, cfg, "voice", s->voice, sizeof s->voice, NULL) ||
      setting_string(conn, cfg, "system_prompt", s->system_prompt, 4001, NULL) ||
      setting_string(conn, cfg, "greeting", s->greeting, 1001, &s->has_greeting))
    return -1;
  for (const char *p = s->language; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') {
      calls_send_error(conn, "bad_message", "config.language must look like en, zh or pt-BR");
      return -1;
    }
  json_t *rate = json_object_get(cfg, "rate");
  if (rate && (!json_is_integer(rate) || json_integer_value(rate) < 50 ||
               json_integer_value(rate) > 300)) {
    calls_send_error(conn, "bad_message", "config.rate must be an integer from 50 to 300");
    return -1;
  }
  if (rate) s->rate = (int)json_integer_value(rate);
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

static void new_call(struct calls *calls, struct ws_conn *conn, struct sdp_session *offer,
                     const struct voice_settings *settings) {
  struct call_entry *e = calloc(1, sizeof *e);
  if (!e) {
    sdp_session_free(offer);
    calls_send_error(conn, "internal", "out of memory");
    return;
  }
  e->calls = calls;
  e->offer = offer;
  e->conn = conn;
  random_id(e->id, sizeof e->id);
  RAND_bytes((unsigned char *)&e->ssrc, sizeof e->ssrc);
  e->worker = media_pool_pick(calls->pool);
  uv_timer_init(calls->loop, &e->resume_timer);
  e->resume_timer.data = e;

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
    uv_close((uv_handle_t *)&e->resume_timer, on_entry_closed);
    return;
  }
  e->next = calls->list;
  calls->list = e;
  calls->count++;
  ws_conn_set_data(conn, e);
  start_record(calls, e, settings);
  log_call_info("calls", e->id, "from %s on worker %d", ws_conn_peer(conn), e->worker);
  send_answer(e, ufrag, pwd);
}

/* An offer on an existing call: an ICE restart when the credentials changed. */
static void renegotiate(struct call_entry *e, struct sdp_session *offer) {
  int restart = strcmp(sdp_ice_ufrag(offer), sdp_ice_ufrag(e->offer)) != 0 ||
                strcmp(sdp_ice_pwd(offer), sdp_ice_pwd(e->offer)) != 0;
  sdp_session_free(e->offer);
  e->offer = offer;
  if (restart) {
    log_call_info("calls", e->id, "ICE restart");
    media_pool_restart_ice(e->calls->pool, e->worker, e->id, sdp_ice_ufrag(offer),
                           sdp_ice_pwd(offer));
  } else {
    calls_send_error(e->conn, "bad_sdp", "only ICE restarts can renegotiate a call");
  }
}

void calls_offer(struct calls *calls, struct ws_conn *conn, json_t *msg) {
  struct call_entry *current = ws_conn_data(conn);
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
  if (!jid && calls->count >= calls->cfg->max_calls) {
    calls_send_error(conn, "busy", "the server is at its call limit; try again later");
    return;
  }
  struct voice_settings settings = {0};
  if (!jid && parse_settings(conn, msg, &settings)) return;
  struct sdp_session *offer = parse_offer(conn, msg);
  if (!offer) return;
  if (jid) renegotiate(current, offer);
  else new_call(calls, conn, offer, &settings);
}

void calls_hangup(struct calls *calls, struct ws_conn *conn) {
  struct call_entry *e = ws_conn_data(conn);
  if (!e) return;
  calls_send(conn, json_pack("{s:s,s:s,s:s}", "type", "end", "reason", "hangup", "call_id", e->id));
  e->conn = NULL;
  ws_conn_set_data(conn, NULL);
  request_end(e, "hangup");
}

void calls_resume(struct calls *calls, struct ws_conn *conn, json_t *msg) {
  const char *id = json_string_value(json_object_get(msg, "call_id"));
  if (!id) {
    calls_send_error(conn, "bad_message", "resume needs a string \"call_id\"");
    return;
  }
  struct call_entry *e = find(calls, id);
  if (!e || e->ending || e->conn || ws_conn_data(conn)) {
    calls_send_error(conn, "unknown_call", "no detached call with that id");
    return;
  }
  uv_timer_stop(&e->resume_timer);
  e->conn = conn;
  ws_conn_set_data(conn, e);
  log_call_info("calls", e->id, "resumed from %s", ws_conn_peer(conn));
  calls_send(conn, json_pack("{s:s,s:s}", "type", "resumed", "call_id", e->id));
  if (e->held_ufrag[0]) {
    send_answer(e, e->held_ufrag, e->held_pwd);
    e->held_ufrag[0] = e->held_pwd[0] = '\0';
  }
}

void calls_detach(struct calls *calls, struct ws_conn *conn) {
  struct call_entry *e = ws_conn_data(conn);
  if (!e) return;
  e->conn = NULL;
  ws_conn_set_data(conn, NULL);
  if (e->ending) return;
  log_call_info("calls", e->id, "page disconnected; waiting %d ms for it",
           calls->cfg->resume_timeout_ms);
  uv_timer_start(&e->resume_timer, on_resume_timeout, (uint64_t)calls->cfg->resume_timeout_ms, 0);
}

int calls_count(const struct calls *calls) { return calls->count; }
struct media_pool *calls_pool(const struct calls *calls) { return calls->pool; }
struct http_client *calls_http(const struct calls *calls) { return calls->http; }
struct engines *calls_engines(const struct calls *calls) { return calls->engines; }

void calls_write_metrics(const struct calls *calls, struct prom_buf *b) {
  callrec_metrics_write(calls->metrics, calls->count, b);
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
      callrec_connected(e->rec);
      calls_send(e->conn, json_pack("{s:s,s:s}", "type", "connected", "call_id", e->id));
      break;
    case MEDIA_EV_RESTARTED:
      if (e->conn) {
        send_answer(e, ev->ufrag, ev->pwd);
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

/* announce_address, else media_address, else (wildcard) every interface's address. */
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
  for (int i = 0; i < n; i++) {
    char ip[64];
    int v6 = ifs[i].address.address4.sin_family == AF_INET6;
    if (v6 && strcmp(cfg->media_address, "::") != 0) continue;
    if (v6) uv_ip6_name(&ifs[i].address.address6, ip, sizeof ip);
    else uv_ip4_name(&ifs[i].address.address4, ip, sizeof ip);
    if (v6 && strncmp(ip, "fe80", 4) == 0) continue; /* link-local needs a scope id */
    add_candidate(calls, ip);
  }
  uv_free_interface_addresses(ifs, n);
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
  if (rc == 0)
    log_info("agent", "voice agent: asr %s, llm %s, tts %s (%d inference threads)",
             engines_asr_name(calls->engines), engines_llm_name(calls->engines),
             engines_tts_name(calls->engines, calls->cfg->language), threads);
  return rc;
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

int calls_new(struct calls **out, uv_loop_t *loop, const struct config *cfg, struct store *store,
              char *err, size_t errlen) {
  struct calls *calls = calloc(1, sizeof *calls);
  if (!calls) return -ENOMEM;
  calls->loop = loop;
  calls->cfg = cfg;
  calls->store = store;
  int rc = callrec_metrics_new(&calls->metrics);
  if (rc == 0) rc = mailbox_new(&calls->events, loop, on_media_event, calls);
  if (rc == 0 && strcmp(cfg->agent, "voice") == 0) rc = open_engines(calls, err, errlen);
  if (rc == 0)
    rc = media_pool_start(&calls->pool, cfg, calls->events, calls->engines, err, errlen);
  if (rc) {
    close_engines(calls);
    if (calls->events) mailbox_close(calls->events, free_msg);
    callrec_metrics_free(calls->metrics);
    free(calls);
    return rc;
  }
  find_candidates(calls);
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
    callrec_end(e->rec, "server shutting down", NULL);
    e->rec = NULL;
    unlink_entry(calls, e);
  }
  /* No worker is left to post: closing the mailbox lets the loop end. */
  mailbox_close(calls->events, free_msg);
  calls->events = NULL;
}

void calls_free(struct calls *calls) {
  if (!calls) return;
  calls_shutdown(calls);
  callrec_metrics_free(calls->metrics);
  free(calls);
}
