/*
 * One call on a media worker.
 *
 * Inbound, a packet goes: UDP -> ICE (STUN checks) or DTLS (handshake) or
 * SRTP -> RTP -> receive statistics -> jitter buffer. Outbound, a frame is
 * made one tick ahead of its time: each 20 ms tick runs two passes over the
 * worker's calls. First every call's ready frame goes out (SRTP, then into
 * the worker's batch of datagrams, all sent by one system call); then every
 * call hears one frame (jitter buffer -> decoder -> the agent) and makes
 * the next tick's frame (the agent speaks one frame, or silence -> Opus ->
 * RTP). So the moment a frame leaves does not depend on how long any
 * call's listening, encoding or echo cancelling takes: the outbound pacing
 * stays within a fraction of a millisecond at any load short of a full
 * CPU. Nothing is delayed by it: a reply's audio is queued long before it
 * is due, and what the agent decides while listening (a barge-in pause)
 * shows in the very next frame. The one frame that cannot wait is a reply's
 * first: when its audio arrives between ticks it takes the place of the
 * ready frame (always silence then) and goes out at once, so a reply never
 * waits for the pacing grid. About once a second an RTCP sender report
 * goes out, and the browser's reports steer our encoder's FEC and bitrate.
 *
 * With record_calls on, each tick also copies the caller's packet just
 * played and the frame that went out this tick to the call's recording
 * (media/recorder.h), which writes them elsewhere, undecoded.
 *
 * A call ends itself (media_call_end_reason) when the browser stops its
 * consent checks, DTLS fails or does not complete, or the browser says BYE.
 *
 * The first SRTP or SRTCP packet from the browser that authenticates shows
 * it has finished its DTLS handshake (a browser keys SRTP only once it has
 * our last flight), so the call then frees its OpenSSL object
 * (dtls_session_release): DTLS has nothing left to do. A close_notify is
 * not read after that, and none is sent at the end: the call's end reaches
 * the page by signaling, the browser's by RTCP BYE, signaling or consent.
 */
#include "media/call.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "audio/jitter.h"
#include "audio/opus_codec.h"
#include "core/log.h"
#include "media/agent.h"
#include "media/recorder.h"
#include "rtc/dtls.h"
#include "rtc/ice.h"
#include "rtc/rtcp.h"
#include "rtc/rtp.h"
#include "rtc/srtpctx.h"

#define DTLS_TIMEOUT_MS 30000
#define RTCP_INTERVAL_MS 1000
#define PKT_MAX (1500 + SRTPCTX_MAX_OVERHEAD)

struct media_call {
  char id[40];
  struct ice_agent *ice;
  struct dtls_session *dtls;
  struct srtpctx *srtp;
  struct jitter *jb;
  struct opusc_enc *enc;
  const struct agent_ops *ops; /* the agent (media/agent.h) */
  void *agent;
  uint8_t next[PKT_MAX]; /* the next tick's frame: RTP header and Opus, not yet protected */
  size_t next_len;       /* 0: none ready */
  size_t next_payload;   /* its Opus bytes, for the sender reports */
  size_t sent;           /* RTP bytes of the frame sent since the last tick heard, still in next */
  struct recorder *recorder; /* record_calls on: where the recording goes */
  struct recorder_call *rec; /* the recording, from the first tick heard */
  struct rtp_stats rx;
  uint32_t peer_ssrc;
  int have_peer;
  media_send_fn send;
  media_event_fn event;
  void *send_user;
  struct sockaddr_storage last_from; /* where DTLS came from, until ICE nominates */
  int has_last_from;
  int opus_pt;
  uint32_t ssrc, ts, packets, octets;
  uint16_t seq;
  int speaking; /* the last frame made (the ready one, while next_len > 0) carries speech */
  int band_rate; /* the rate the encoder's band is set for (0: the full band) */
  unsigned seed; /* spreads RTCP reports in time */
  uint64_t created_ms, next_rtcp_ms;
  int connected, connected_reported;
  char end_reason[64];
  /* Metrics: earlier streams' counts (the caller's SSRC changed), SRTP
   * packets refused, and what the worker has been given already. */
  uint64_t prior_received, prior_lost, srtp_failures;
  struct media_counters reported;
  uint8_t pkt[PKT_MAX];
};

/* Packets of the current stream never received (RFC 3550 A.3; duplicates can make it negative). */
static uint64_t stream_lost(const struct rtp_stats *rx) {
  if (!rx->received) return 0;
  uint32_t expected = rx->cycles + rx->max_seq - rx->base_seq + 1;
  return expected > rx->received ? expected - rx->received : 0;
}

/* Every stream the caller sent counts: a new SSRC mid-call restarts only the RFC 3550 figures. */
void media_call_get_summary(const struct media_call *c, struct media_call_summary *out) {
  memset(out, 0, sizeof *out);
  struct jitter_stats js;
  jitter_get_stats(c->jb, &js);
  out->packets_received = c->prior_received + c->rx.received;
  out->packets_lost = c->prior_lost + stream_lost(&c->rx);
  out->late = js.late;
  out->concealed = js.concealed;
  if (c->rec) recorder_file_name(c->id, out->recording, sizeof out->recording);
}

/* Counters only grow: a figure that went down (lost, after a late duplicate) adds nothing. */
static void take(uint64_t now, uint64_t *reported, uint64_t *to) {
  if (now <= *reported) return;
  *to += now - *reported;
  *reported = now;
}

void media_call_take_counters(struct media_call *c, struct media_counters *to) {
  struct jitter_stats js;
  jitter_get_stats(c->jb, &js);
  struct media_counters *r = &c->reported;
  take(c->prior_received + c->rx.received, &r->rtp_received, &to->rtp_received);
  take(c->prior_lost + stream_lost(&c->rx), &r->rtp_lost, &to->rtp_lost);
  take(js.late, &r->rtp_late, &to->rtp_late);
  take(js.concealed, &r->concealed, &to->concealed);
  take(js.recovered, &r->recovered, &to->recovered);
  take(js.dropped, &r->dropped, &to->dropped);
  take(c->srtp_failures, &r->srtp_failures, &to->srtp_failures);
  uint32_t sent = c->packets - (uint32_t)r->rtp_sent; /* c->packets wraps at 2^32 */
  to->rtp_sent += sent;
  r->rtp_sent += sent;
}

/* --- sending ---------------------------------------------------------------- */

static const struct sockaddr *destination(const struct media_call *c) {
  const struct sockaddr *sel = ice_selected(c->ice);
  if (sel) return sel;
  return c->has_last_from ? (const struct sockaddr *)&c->last_from : NULL;
}

static void send_to_peer(struct media_call *c, const uint8_t *data, size_t len) {
  const struct sockaddr *to = destination(c);
  if (to && c->send) c->send(c->send_user, data, len, to);
}

static void dtls_out(void *user, const uint8_t *data, size_t len) { send_to_peer(user, data, len); }

static void end_call(struct media_call *c, const char *reason) {
  if (!c->end_reason[0]) snprintf(c->end_reason, sizeof c->end_reason, "%s", reason);
}

/* --- the agent's host ------------------------------------------------------------ */

static void agent_event(void *user, char *json) {
  struct media_call *c = user;
  if (c->event) c->event(c->send_user, c->id, json);
  else free(json);
}

static void agent_end(void *user, const char *reason) { end_call(user, reason); }

static void make_frame(struct media_call *c, const int16_t *pcm, int audio);
static void send_ready(struct media_call *c);

/* A reply's first audio arrived between ticks: it replaces the ready
 * silence (taking its sequence number and timestamp) and goes out now. */
static void agent_kick(void *user) {
  struct media_call *c = user;
  int16_t out[OPUSC_FRAME];
  if (!c->srtp || c->end_reason[0] || !c->next_len || c->speaking) return;
  if (!c->ops->speak_again || !c->ops->speak_again(c->agent, out)) return;
  c->seq--;
  c->ts -= OPUSC_FRAME;
  make_frame(c, out, 1);
  send_ready(c);
}

static int make_agent(struct media_call *c, const struct media_call_params *p,
                      const struct media_agent_env *env) {
  struct agent_host host = {agent_event, agent_end, agent_kick, c};
  struct agent_params ap = {p->call_id, env->cfg, env->engines, env->home, &p->settings, &host};
  c->ops = env->ops;
  return c->ops->create(&c->agent, &ap);
}

/* --- life ----------------------------------------------------------------------- */

struct media_call *media_call_new(const struct media_call_params *p, struct dtls_ctx *dtls,
                                  const struct media_agent_env *agent, uint64_t now_ms) {
  struct media_call *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  snprintf(c->id, sizeof c->id, "%s", p->call_id);
  c->ice = ice_agent_new(now_ms, p->ice_timeout_ms > 0 ? p->ice_timeout_ms : 30000);
  c->dtls = dtls_session_new(dtls, p->remote_fp_alg, p->remote_fp, dtls_out, c);
  /* Opus decodes straight to the rate the agent hears (the voice agent's is 16 kHz). */
  c->jb = jitter_new_rate(agent->ops->in_rate);
  c->enc = opusc_enc_new(OPUSC_AGENT, 0);
  if (!c->ice || !c->dtls || !c->jb || !c->enc || make_agent(c, p, agent) != 0) {
    media_call_free(c);
    return NULL;
  }
  ice_set_remote(c->ice, p->remote_ufrag, p->remote_pwd);
  rtp_stats_init(&c->rx);
  c->opus_pt = p->opus_pt;
  c->ssrc = p->ssrc;
  RAND_bytes((unsigned char *)&c->seq, sizeof c->seq);
  RAND_bytes((unsigned char *)&c->ts, sizeof c->ts);
  c->created_ms = now_ms;
  c->seed = c->ssrc;
  c->recorder = agent->recorder;
  return c;
}

void media_call_free(struct media_call *c) {
  if (!c) return;
  recorder_call_end(c->rec);
  ice_agent_free(c->ice);
  dtls_session_free(c->dtls);
  srtpctx_free(c->srtp);
  jitter_free(c->jb);
  opusc_enc_free(c->enc);
  if (c->ops) c->ops->destroy(c->agent);
  free(c);
}

void media_call_attach(struct media_call *c, media_send_fn send, media_event_fn event, void *user) {
  c->send = send;
  c->event = event;
  c->send_user = user;
}

const char *media_call_id(const struct media_call *c) { return c->id; }
const char *media_call_ufrag(const struct media_call *c) { return ice_local_ufrag(c->ice); }
const char *media_call_pwd(const struct media_call *c) { return ice_local_pwd(c->ice); }
const char *media_call_end_reason(const struct media_call *c) {
  return c->end_reason[0] ? c->end_reason : NULL;
}

int media_call_take_connected(struct media_call *c) {
  if (!c->connected || c->connected_reported) return 0;
  c->connected_reported = 1;
  return 1;
}

int media_call_restart_ice(struct media_call *c, const char *ufrag, const char *pwd,
                           uint64_t now_ms) {
  ice_restart(c->ice, ufrag, pwd, now_ms);
  return 0;
}

/* --- receiving ----------------------------------------------------------------------- */

int media_call_on_stun(struct media_call *c, const uint8_t *pkt, size_t len,
                       const struct sockaddr *from, uint64_t now_ms) {
  size_t out_len;
  int r = ice_handle(c->ice, pkt, len, from, now_ms, c->pkt, sizeof c->pkt, &out_len);
  if (r & ICE_RESPOND && c->send) c->send(c->send_user, c->pkt, out_len, from);
  if (r & ICE_SELECTED) log_call_debug("media", c->id, "path selected");
  return (r & ICE_AUTHENTICATED) ? 1 : 0;
}

static void on_dtls_connected(struct media_call *c) {
  uint8_t km[DTLS_MAX_KEYING];
  size_t kl = sizeof km;
  int profile;
  if (dtls_session_srtp_keys(c->dtls, &profile, km, &kl) ||
      srtpctx_new(&c->srtp, profile, km, kl, dtls_session_role(c->dtls) == DTLS_ROLE_CLIENT)) {
    end_call(c, "dtls failed");
    return;
  }
  memset(km, 0, sizeof km);
  c->connected = 1;
  if (c->ops->start) c->ops->start(c->agent);
  log_call_info("media", c->id, "connected (SRTP profile %d)", profile);
}

static void on_dtls(struct media_call *c, const uint8_t *pkt, size_t len,
                    const struct sockaddr *from) {
  memcpy(&c->last_from, from, from->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                          : sizeof(struct sockaddr_in));
  c->has_last_from = 1;
  enum dtls_state before = dtls_session_state(c->dtls);
  enum dtls_state st = dtls_session_handle(c->dtls, pkt, len);
  if (st == DTLS_CONNECTED && before != DTLS_CONNECTED) on_dtls_connected(c);
  else if (st == DTLS_FAILED) {
    log_call_warn("media", c->id, "DTLS failed: %s", dtls_session_error(c->dtls));
    end_call(c, strstr(dtls_session_error(c->dtls), "fingerprint") ? "fingerprint mismatch" : "dtls failed");
  } else if (st == DTLS_CLOSED) {
    end_call(c, "hangup");
  }
}

static void on_rtp(struct media_call *c, uint8_t *pkt, size_t len, uint64_t now) {
  struct rtp_header h;
  if (srtpctx_unprotect_rtp(c->srtp, pkt, &len)) {
    c->srtp_failures++;
    return;
  }
  dtls_session_release(c->dtls);
  if (rtp_parse(pkt, len, &h)) return;
  if (h.pt != c->opus_pt || h.payload_len == 0) return; /* telephone-event, RED...: not played */
  if (!c->have_peer || h.ssrc != c->peer_ssrc) {
    c->prior_received += c->rx.received;
    c->prior_lost += stream_lost(&c->rx);
    c->peer_ssrc = h.ssrc;
    c->have_peer = 1;
    rtp_stats_init(&c->rx);
  }
  if (rtp_stats_update(&c->rx, h.seq, h.ts, now, OPUSC_RATE) == 0)
    jitter_put(c->jb, h.seq, h.payload, h.payload_len, now);
}

static void on_rtcp(struct media_call *c, uint8_t *pkt, size_t len, uint64_t now) {
  struct rtcp_info info;
  if (srtpctx_unprotect_rtcp(c->srtp, pkt, &len)) {
    c->srtp_failures++;
    return;
  }
  dtls_session_release(c->dtls);
  if (rtcp_parse(pkt, len, &info)) return;
  if (info.has_sr) {
    c->rx.last_sr_ntp_mid = info.sr_ntp_mid;
    c->rx.last_sr_arrival_ms = now;
  }
  for (int i = 0; i < info.nblocks; i++)
    if (info.blocks[i].ssrc == c->ssrc) opusc_enc_adapt(c->enc, info.blocks[i].fraction_lost);
  /* Only the DTLS peer can send RTCP that unprotects, so a BYE before any RTP is the caller's too. */
  if (info.bye && (!c->have_peer || rtcp_bye_names(&info, c->peer_ssrc))) end_call(c, "hangup");
}

void media_call_on_packet(struct media_call *c, uint8_t *pkt, size_t len,
                          const struct sockaddr *from, uint64_t now_ms) {
  switch (rtp_demux(pkt, len)) {
  case RTP_DEMUX_DTLS:
    on_dtls(c, pkt, len, from);
    break;
  case RTP_DEMUX_RTP:
    if (c->srtp) on_rtp(c, pkt, len, now_ms);
    break;
  case RTP_DEMUX_RTCP:
    if (c->srtp) on_rtcp(c, pkt, len, now_ms);
    break;
  default:
    break;
  }
}

/* --- the tick ----------------------------------------------------------------------------- */

/* Speech made at a lower rate than 48 kHz has no band above half of it: Opus
 * need not code one (its band limit changes without a glitch). */
static void follow_band(struct media_call *c) {
  int rate = c->ops->out_rate ? c->ops->out_rate(c->agent) : 0;
  if (rate == c->band_rate) return;
  c->band_rate = rate;
  opusc_enc_set_max_rate(c->enc, rate);
}

/* The next tick's frame: Opus, behind an RTP header whose marker starts a talkspurt. */
static void make_frame(struct media_call *c, const int16_t *pcm, int audio) {
  if (audio) follow_band(c);
  size_t hdr = rtp_write_header(c->next, audio && !c->speaking, c->opus_pt, c->seq, c->ts, c->ssrc);
  int n = opusc_encode(c->enc, pcm, c->next + hdr, sizeof c->next - hdr - SRTPCTX_MAX_OVERHEAD);
  c->seq++;
  c->ts += OPUSC_FRAME;
  c->speaking = audio;
  c->next_len = n < 0 ? 0 : hdr + (size_t)n;
  c->next_payload = n < 0 ? 0 : (size_t)n;
}

/* The ready frame goes out, protected in c->pkt: a frame is protected only
 * once its place is final, since SRTP must never encrypt two packets under
 * one sequence number. */
static void send_ready(struct media_call *c) {
  size_t len = c->next_len, plain = len;
  if (!len) return;
  c->next_len = 0;
  memcpy(c->pkt, c->next, len);
  if (srtpctx_protect_rtp(c->srtp, c->pkt, &len, sizeof c->pkt)) return;
  c->sent = plain; /* the frame stays in c->next until the next make_frame: recorded from there */
  c->packets++;
  c->octets += (uint32_t)c->next_payload;
  send_to_peer(c, c->pkt, len);
}

static uint64_t wall_ms(void);

/* The recording's tick: the caller's packet just played, beside the frame
 * that went out to the caller this tick (made on the tick before, or a
 * reply's first frame sent between ticks). Copies only: no coding. */
static void record_tick(struct media_call *c) {
  size_t sent = c->sent, heard_len;
  c->sent = 0;
  if (!c->recorder) return;
  if (!c->rec && !(c->rec = recorder_call_new(c->recorder, c->id, wall_ms()))) {
    log_call_warn("media", c->id, "cannot record this call");
    c->recorder = NULL;
    return;
  }
  const uint8_t *heard = jitter_last_packet(c->jb, &heard_len);
  const uint8_t *spoken = sent ? c->next + sent - c->next_payload : NULL;
  recorder_call_tick(c->rec, heard, heard_len, spoken, sent ? c->next_payload : 0);
}

void media_call_tick_in(struct media_call *c) {
  if (c->end_reason[0] || !c->connected) return;
  int16_t in[OPUSC_FRAME], out[OPUSC_FRAME];
  const int16_t *heard = jitter_get(c->jb, in) ? in : NULL;
  record_tick(c);
  c->ops->hear(c->agent, heard);
  make_frame(c, out, c->ops->speak(c->agent, out));
}

static uint64_t wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static void send_rtcp(struct media_call *c, uint64_t now) {
  struct rtcp_sender_info si = {.ntp = rtcp_ntp_from_ms(wall_ms()), .rtp_ts = c->ts,
                                .packets = c->packets, .octets = c->octets};
  struct rtp_report_block rb;
  if (c->have_peer) rtp_stats_report(&c->rx, c->peer_ssrc, now, &rb);
  int n = rtcp_build(c->pkt, sizeof c->pkt - SRTPCTX_MAX_OVERHEAD, c->ssrc, &si,
                     c->have_peer ? &rb : NULL, c->id);
  size_t len = n > 0 ? (size_t)n : 0;
  if (len && srtpctx_protect_rtcp(c->srtp, c->pkt, &len, sizeof c->pkt) == 0) send_to_peer(c, c->pkt, len);
}

void media_call_tick(struct media_call *c, uint64_t now_ms) {
  if (c->end_reason[0]) return;
  if (ice_expired(c->ice, now_ms)) {
    end_call(c, "ice timeout");
    return;
  }
  if (!c->connected) {
    if (dtls_session_timeout_ms(c->dtls) == 0) dtls_session_on_timer(c->dtls);
    if (now_ms > c->created_ms && now_ms - c->created_ms > DTLS_TIMEOUT_MS) end_call(c, "dtls timeout");
    return;
  }
  send_ready(c);
  if (now_ms >= c->next_rtcp_ms) {
    send_rtcp(c, now_ms);
    c->next_rtcp_ms = now_ms + RTCP_INTERVAL_MS / 2 + (uint64_t)(rand_r(&c->seed) % RTCP_INTERVAL_MS);
  }
}
