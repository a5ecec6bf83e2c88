/*
 * The client side of a call's media.
 *
 * One UDP socket per peer, read through a uv_poll_t rather than uv_udp_t so
 * that each datagram's kernel receive time (SO_TIMESTAMPNS) is available:
 * measurements of the server's pacing then do not include the time this
 * process took to get round to the packet, which matters when one thread
 * runs hundreds of calls. The stamp is on the realtime clock; it is turned
 * into monotonic time by subtracting how long ago it was.
 *
 * Every packet on the socket is sorted by its first byte (RFC 7983): STUN
 * goes to the controlling ICE agent, DTLS to the client session (started
 * once ICE selects a path), SRTP to the receive path. On each RTP packet:
 * sequence accounting (gaps are lost packets), the schedule check (a
 * packet more than 60 ms behind the schedule, see schedule(), is late), the inter-arrival deviation from the timestamp
 * spacing (jitter), one decode to measure the frame's level, and, when
 * playing out, the jitter buffer.
 */
#include "client/peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "audio/jitter.h"
#include "client/ice_ctl.h"
#include "client/stats.h"
#include "core/num.h"
#include "rtc/dtls.h"
#include "rtc/ice.h"
#include "rtc/rtcp.h"
#include "rtc/rtp.h"
#include "rtc/sdp.h"
#include "rtc/srtpctx.h"

#define PKT_MAX (1500 + SRTPCTX_MAX_OVERHEAD)
#define RTCP_INTERVAL_MS 1000
#define RECV_BATCH 64
#define TRANSIT_WINDOW 128 /* packets: 2.56 s */

struct peer {
  uv_loop_t *loop;
  uv_poll_t poll;
  int fd, family, port;
  struct peer_params prm;
  char local_ip[64];
  enum peer_state state;
  char error[256];
  struct icectl *ice;
  struct dtls_session *dtls;
  struct srtpctx *srtp;
  struct opusc_enc *enc;
  struct opusc_dec *dec;
  struct jitter *jb;
  int opus_pt;
  int max_rate; /* the answer's maxplaybackrate; 0: the full band */
  uint32_t ssrc, ts, packets, octets;
  uint16_t seq;
  uint64_t started_ms, next_rtcp_ms;
  char remote_desc[200]; /* the candidates, for error messages */
  /* receive accounting */
  struct rtp_stats rx;
  uint32_t peer_ssrc;
  int have_rx;
  int64_t ext_first, ext_max;
  int64_t ts_rel;
  uint32_t last_ts;
  double transits[TRANSIT_WINDOW], last_arrival;
  size_t ntransit;
  int64_t last_ext;
  struct peer_counters n;
  /* speakerphone echo: what was played, delayed */
  int16_t *echo_ring;
  size_t ring_len, ring_w, echo_delay;
  uint64_t echo_frames; /* microphone frames sent with the echo mixed in */
  uint8_t pkt[PKT_MAX];
  /* send-side impairment (peer_params.loss_pct, jitter_ms) */
  uint64_t rng, now_ms;
  struct held_pkt *held;
  int nheld;
};

#define HELD_MAX 16 /* packets held back for jitter; more are sent at once */

struct held_pkt {
  uint64_t due_ms;
  size_t len;
  uint8_t data[PKT_MAX];
};

static int fail(struct peer *p, const char *fmt, const char *arg) {
  if (p->state != PEER_FAILED) {
    snprintf(p->error, sizeof p->error, fmt, arg);
    p->state = PEER_FAILED;
  }
  return -EPROTO;
}

/* --- sending ----------------------------------------------------------------- */

static socklen_t sa_len(const struct sockaddr *sa) {
  return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static void send_to(struct peer *p, const uint8_t *data, size_t len, const struct sockaddr *to) {
  if (to && to->sa_family == p->family)
    (void)sendto(p->fd, data, len, MSG_DONTWAIT, to, sa_len(to)); /* UDP: a drop is a loss */
}

static void dtls_out(void *user, const uint8_t *data, size_t len) {
  struct peer *p = user;
  send_to(p, data, len, icectl_selected(p->ice));
}

/* --- life ----------------------------------------------------------------------- */

static int open_socket(struct peer *p, char *err, size_t errlen) {
  p->family = strchr(p->local_ip, ':') ? AF_INET6 : AF_INET;
  p->fd = socket(p->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p->fd < 0) {
    snprintf(err, errlen, "UDP socket: %s", strerror(errno));
    return -errno;
  }
  int on = 1, buf = 512 * 1024;
  setsockopt(p->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  setsockopt(p->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  struct sockaddr_storage ss = {0};
  ss.ss_family = (sa_family_t)p->family;
  if (bind(p->fd, (struct sockaddr *)&ss, sa_len((struct sockaddr *)&ss)) < 0) {
    snprintf(err, errlen, "UDP bind: %s", strerror(errno));
    return -errno;
  }
  socklen_t sl = sizeof ss;
  getsockname(p->fd, (struct sockaddr *)&ss, &sl);
  p->port = ntohs(p->family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                        : ((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

static void on_readable(uv_poll_t *h, int status, int events);

static int make_parts(struct peer *p) {
  p->ice = icectl_new(uv_now(p->loop));
  p->dec = opusc_dec_new();
  if (!p->ice || !p->dec) return -ENOMEM;
  if (p->prm.echo_gain > 0) p->prm.playout = 1;
  if (p->prm.playout && !(p->jb = jitter_new())) return -ENOMEM;
  if (p->prm.echo_gain > 0) {
    p->echo_delay = (size_t)p->prm.echo_delay_ms * OPUSC_RATE / 1000;
    p->ring_len = p->echo_delay + OPUSC_FRAME;
    p->echo_ring = calloc(p->ring_len, sizeof(int16_t));
    if (!p->echo_ring) return -ENOMEM;
  }
  if (p->prm.jitter_ms > 0 && !(p->held = calloc(HELD_MAX, sizeof *p->held))) return -ENOMEM;
  p->rng = p->prm.seed ? p->prm.seed : 0x5eed;
  return 0;
}

static void free_parts(struct peer *p) {
  icectl_free(p->ice);
  dtls_session_free(p->dtls);
  srtpctx_free(p->srtp);
  opusc_enc_free(p->enc);
  opusc_dec_free(p->dec);
  jitter_free(p->jb);
  free(p->echo_ring);
  free(p->held);
  if (p->fd >= 0) close(p->fd);
  free(p);
}

int peer_new(struct peer **out, uv_loop_t *loop, const struct peer_params *prm, char *err,
             size_t errlen) {
  struct peer *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->loop = loop;
  p->prm = *prm;
  p->fd = -1;
  snprintf(p->local_ip, sizeof p->local_ip, "%s", prm->local_ip ? prm->local_ip : "");
  int rc = make_parts(p);
  if (rc) snprintf(err, errlen, "out of memory");
  if (rc == 0) rc = open_socket(p, err, errlen);
  if (rc == 0 && uv_poll_init(loop, &p->poll, p->fd) != 0) {
    snprintf(err, errlen, "cannot poll the UDP socket");
    rc = -EIO;
  }
  if (rc) {
    free_parts(p);
    return rc;
  }
  p->poll.data = p;
  uv_poll_start(&p->poll, UV_READABLE, on_readable);
  RAND_bytes((unsigned char *)&p->ssrc, sizeof p->ssrc);
  RAND_bytes((unsigned char *)&p->seq, sizeof p->seq);
  RAND_bytes((unsigned char *)&p->ts, sizeof p->ts);
  p->started_ms = uv_now(loop);
  rtp_stats_init(&p->rx);
  *out = p;
  return 0;
}

static void on_closed(uv_handle_t *h) { free_parts(h->data); }

void peer_close(struct peer *p) {
  if (!p) return;
  uv_poll_stop(&p->poll);
  uv_close((uv_handle_t *)&p->poll, on_closed);
}

enum peer_state peer_state(const struct peer *p) { return p->state; }
const char *peer_error(const struct peer *p) { return p->error; }
int peer_local_port(const struct peer *p) { return p->port; }

void peer_counters(const struct peer *p, struct peer_counters *c) {
  *c = p->n;
  c->expected = p->have_rx ? (uint64_t)(p->ext_max - p->ext_first + 1) : 0;
}

/* --- negotiation ---------------------------------------------------------------------- */

int peer_offer(struct peer *p, char **sdp) {
  char cname[17];
  ice_random_chars(cname, 16);
  struct sdp_answer_params o = {.ice_ufrag = icectl_local_ufrag(p->ice),
                                .ice_pwd = icectl_local_pwd(p->ice),
                                .fingerprint = p->prm.fingerprint, .setup = "active",
                                .ssrc = p->ssrc, .cname = cname, .port = p->port};
  if (p->local_ip[0]) {
    o.candidates[0] = p->local_ip;
    o.ncandidates = 1;
  }
  return sdp_build_offer(&o, sdp);
}

static int add_candidates(struct peer *p, const struct sdp_session *s) {
  int added = 0;
  size_t used = 0;
  for (int i = 0; i < sdp_candidate_count(s); i++) {
    char ip[64];
    int port;
    if (sdp_candidate(s, i, ip, sizeof ip, &port)) continue;
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *v4 = (void *)&ss;
    struct sockaddr_in6 *v6 = (void *)&ss;
    if (p->family == AF_INET && inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons((uint16_t)port);
    } else if (p->family == AF_INET6 && inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons((uint16_t)port);
    } else {
      continue; /* another address family, or a host name (mDNS): not reachable from here */
    }
    if (icectl_add_candidate(p->ice, (struct sockaddr *)&ss) == 0) added++;
    int n = snprintf(p->remote_desc + used, sizeof p->remote_desc - used, "%s%s:%d",
                     used ? ", " : "", ip, port);
    if (n > 0 && (size_t)n < sizeof p->remote_desc - used) used += (size_t)n;
  }
  return added;
}

/* The band the server asks us to code for (RFC 7587 maxplaybackrate), as a browser honours it. */
static int answer_max_rate(const struct sdp_session *s) {
  char v[16];
  if (sdp_opus_param(s, "maxplaybackrate", v, sizeof v) != 0) return 0;
  int hz;
  return num_parse_int_str(v, 8000, 47999, &hz) == 0 ? hz : 0;
}

int peer_max_playback_rate(const struct peer *p) { return p->max_rate; }

int peer_answer(struct peer *p, const char *text, char *err, size_t errlen) {
  struct sdp_session *s = NULL;
  char why[200];
  if (sdp_parse(text, strlen(text), &s, why, sizeof why)) {
    snprintf(err, errlen, "the answer's SDP is unusable: %s", why);
    return -EBADMSG;
  }
  int rc = -EBADMSG;
  const char *setup = sdp_setup(s);
  if (sdp_opus_pt(s) < 0) snprintf(err, errlen, "the answer has no Opus codec");
  else if (!sdp_ice_ufrag(s)[0] || !sdp_ice_pwd(s)[0]) snprintf(err, errlen, "the answer has no ICE credentials");
  else if (!sdp_fingerprint(s)[0]) snprintf(err, errlen, "the answer has no DTLS fingerprint");
  else if (setup[0] && strcmp(setup, "passive") != 0 && strcmp(setup, "actpass") != 0)
    snprintf(err, errlen, "the answer says setup:%s, but we offered setup:active", setup);
  else if (add_candidates(p, s) == 0)
    snprintf(err, errlen, "the answer has no %s candidate", p->family == AF_INET ? "IPv4" : "IPv6");
  else if (!(p->dtls = dtls_session_new(p->prm.dtls, sdp_fingerprint_alg(s), sdp_fingerprint(s),
                                         dtls_out, p)))
    snprintf(err, errlen, "cannot start DTLS (fingerprint algorithm %s?)", sdp_fingerprint_alg(s));
  else rc = 0;
  if (rc == 0) {
    p->opus_pt = sdp_opus_pt(s);
    p->max_rate = answer_max_rate(s);
    icectl_set_remote(p->ice, sdp_ice_ufrag(s), sdp_ice_pwd(s));
    p->state = PEER_CHECKING;
    p->started_ms = uv_now(p->loop);
  }
  sdp_session_free(s);
  return rc;
}

/* --- receiving ------------------------------------------------------------------------ */

static double frame_db(const int16_t *pcm, int n) {
  double sum = 0;
  for (int i = 0; i < n; i++) sum += (double)pcm[i] * pcm[i];
  return 10.0 * log10(sum / (n > 0 ? n : 1) / (32768.0 * 32768.0) + 1e-12);
}

/*
 * The schedule is the smallest transit (arrival minus RTP time) of the last
 * TRANSIT_WINDOW packets: the pace the sender kept when nothing delayed it.
 * A window rather than all time, and restarted at each late packet, so
 * that a sender that once stalled and carried on (its timestamps now
 * behind the clock for good) counts as late once, as a jitter buffer would
 * miss its deadline once and re-sync, not for the rest of the call.
 */
static double schedule(struct peer *p, double transit) {
  p->transits[p->ntransit++ % TRANSIT_WINDOW] = transit;
  size_t n = p->ntransit < TRANSIT_WINDOW ? p->ntransit : TRANSIT_WINDOW;
  double m = transit;
  for (size_t i = 0; i < n; i++)
    if (p->transits[i] < m) m = p->transits[i];
  return m;
}

static void account(struct peer *p, const struct rtp_header *h, struct peer_rx *rx) {
  if (!p->have_rx || h->ssrc != p->peer_ssrc) {
    p->have_rx = 1;
    p->peer_ssrc = h->ssrc;
    p->ext_first = p->ext_max = p->last_ext = h->seq;
    p->ts_rel = 0;
    p->last_ts = h->ts;
    p->ntransit = 0;
    schedule(p, rx->arrival_ms);
    p->last_arrival = rx->arrival_ms;
    rtp_stats_init(&p->rx);
    p->n.received++;
    return;
  }
  int64_t ext = p->ext_max + (int16_t)(h->seq - (uint16_t)p->ext_max);
  if (ext > p->ext_max) p->ext_max = ext;
  p->n.received++;
  p->ts_rel += (int32_t)(h->ts - p->last_ts);
  p->last_ts = h->ts;
  double transit = rx->arrival_ms - (double)p->ts_rel / 48.0;
  rx->late = transit - schedule(p, transit) > PEER_LATE_MS;
  if (rx->late) { /* a receiver's playout would re-sync here: so does the schedule */
    p->ntransit = 0;
    schedule(p, transit);
  }
  p->n.late += (uint64_t)rx->late;
  if (ext == p->last_ext + 1) {
    double d = fabs((rx->arrival_ms - p->last_arrival) - 20.0);
    if (p->prm.jitter_hist) stats_hist_add(p->prm.jitter_hist, d);
    if (d > p->n.jitter_max_ms) p->n.jitter_max_ms = d;
  }
  p->last_ext = ext;
  p->last_arrival = rx->arrival_ms;
}

static void on_rtp(struct peer *p, uint8_t *pkt, size_t len, double arrival) {
  struct rtp_header h;
  if (srtpctx_unprotect_rtp(p->srtp, pkt, &len) || rtp_parse(pkt, len, &h)) return;
  if (h.pt != p->opus_pt || h.payload_len == 0) return;
  struct peer_rx rx = {.arrival_ms = arrival, .seq = h.seq, .level_db = -120};
  account(p, &h, &rx);
  rtp_stats_update(&p->rx, h.seq, h.ts, (uint64_t)arrival, OPUSC_RATE);
  int16_t pcm[OPUSC_MAX_FRAME];
  int n = opusc_decode(p->dec, h.payload, h.payload_len, pcm, OPUSC_MAX_FRAME);
  if (n > 0) rx.level_db = frame_db(pcm, n);
  else p->n.decode_errors++;
  if (p->jb) jitter_put(p->jb, h.seq, h.payload, h.payload_len, (uint64_t)arrival);
  if (p->prm.on_rx) p->prm.on_rx(p->prm.user, &rx);
}

static void on_dtls_connected(struct peer *p) {
  uint8_t km[DTLS_MAX_KEYING];
  size_t kl = sizeof km;
  int profile;
  if (dtls_session_srtp_keys(p->dtls, &profile, km, &kl) ||
      srtpctx_new(&p->srtp, profile, km, kl, 1)) {
    fail(p, "%s", "DTLS finished but SRTP keys could not be made");
    return;
  }
  memset(km, 0, sizeof km);
  p->state = PEER_CONNECTED;
  p->next_rtcp_ms = uv_now(p->loop) + RTCP_INTERVAL_MS;
}

static void on_stun(struct peer *p, const uint8_t *pkt, size_t len, const struct sockaddr *from) {
  size_t out_len;
  int r = icectl_handle(p->ice, pkt, len, from, uv_now(p->loop), p->pkt, sizeof p->pkt, &out_len);
  if (r & ICECTL_RESPOND) send_to(p, p->pkt, out_len, from);
  if (r & ICECTL_SELECTED && p->state == PEER_CHECKING) {
    p->state = PEER_DTLS;
    if (dtls_session_start(p->dtls) == DTLS_FAILED)
      fail(p, "DTLS failed: %s", dtls_session_error(p->dtls));
  }
}

static void on_datagram(struct peer *p, uint8_t *pkt, size_t len, const struct sockaddr *from,
                        double arrival) {
  switch (rtp_demux(pkt, len)) {
  case RTP_DEMUX_STUN:
    on_stun(p, pkt, len, from);
    break;
  case RTP_DEMUX_DTLS:
    if (p->dtls && p->state >= PEER_DTLS && p->state != PEER_FAILED) {
      enum dtls_state st = dtls_session_handle(p->dtls, pkt, len);
      if (st == DTLS_CONNECTED && p->state == PEER_DTLS) on_dtls_connected(p);
      else if (st == DTLS_FAILED) fail(p, "DTLS failed: %s", dtls_session_error(p->dtls));
    }
    break;
  case RTP_DEMUX_RTP:
    if (p->srtp) on_rtp(p, pkt, len, arrival);
    break;
  default:
    break; /* RTCP: nothing in the server's reports changes what we send */
  }
}

static double mono_ms(void) { return (double)uv_hrtime() / 1e6; }

static double realtime_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static double stamp_of(struct msghdr *mh, double now_mono, double now_real) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      struct timespec ts;
      memcpy(&ts, CMSG_DATA(c), sizeof ts);
      double ago = now_real - ((double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6);
      return ago > 0 ? now_mono - ago : now_mono;
    }
  }
  return now_mono;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  struct peer *p = h->data;
  double now_mono = mono_ms(), now_real = realtime_ms();
  for (int i = 0; i < RECV_BATCH; i++) {
    struct sockaddr_storage from;
    struct iovec iov = {.iov_base = p->pkt, .iov_len = sizeof p->pkt - SRTPCTX_MAX_OVERHEAD};
    char ctl[CMSG_SPACE(sizeof(struct timespec))];
    struct msghdr mh = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov,
                        .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    ssize_t n = recvmsg(p->fd, &mh, MSG_DONTWAIT);
    if (n <= 0) break;
    on_datagram(p, p->pkt, (size_t)n, (struct sockaddr *)&from, stamp_of(&mh, now_mono, now_real));
  }
}

/* --- the tick --------------------------------------------------------------------------- */

/* xorshift64*: a repeatable uniform number in [0, 1) for the impairment. */
static double impair_rand(struct peer *p) {
  p->rng ^= p->rng >> 12;
  p->rng ^= p->rng << 25;
  p->rng ^= p->rng >> 27;
  return (double)((p->rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* Whether the impairment took the packet: lost, or held back for later. */
static int impaired_send(struct peer *p, const uint8_t *pkt, size_t len) {
  if (p->prm.loss_pct > 0 && impair_rand(p) * 100 < p->prm.loss_pct) return 1;
  if (!p->held || p->nheld == HELD_MAX) return 0;
  struct held_pkt *h = &p->held[p->nheld++];
  h->due_ms = p->now_ms + (uint64_t)(impair_rand(p) * (p->prm.jitter_ms + 1));
  h->len = len;
  memcpy(h->data, pkt, len);
  return 1;
}

static void send_held(struct peer *p) {
  for (int i = 0; i < p->nheld;) {
    if (p->held[i].due_ms > p->now_ms) {
      i++;
      continue;
    }
    send_to(p, p->held[i].data, p->held[i].len, icectl_selected(p->ice));
    p->held[i] = p->held[--p->nheld];
  }
}

static void send_rtp(struct peer *p, const uint8_t *payload, size_t len) {
  uint8_t buf[PKT_MAX];
  size_t hdr = rtp_write_header(buf, 0, p->opus_pt, p->seq++, p->ts, p->ssrc);
  p->ts += OPUSC_FRAME;
  if (len > sizeof buf - hdr - SRTPCTX_MAX_OVERHEAD) return;
  memcpy(buf + hdr, payload, len);
  size_t total = hdr + len;
  if (srtpctx_protect_rtp(p->srtp, buf, &total, sizeof buf)) return;
  p->packets++;
  p->octets += (uint32_t)len;
  p->n.sent++;
  if (impaired_send(p, buf, total)) return;
  send_to(p, buf, total, icectl_selected(p->ice));
}

static void send_rtcp(struct peer *p, uint64_t now) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t wall = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
  struct rtcp_sender_info si = {.ntp = rtcp_ntp_from_ms(wall), .rtp_ts = p->ts,
                                .packets = p->packets, .octets = p->octets};
  struct rtp_report_block rb;
  if (p->have_rx) rtp_stats_report(&p->rx, p->peer_ssrc, now, &rb);
  uint8_t buf[PKT_MAX];
  int n = rtcp_build(buf, sizeof buf - SRTPCTX_MAX_OVERHEAD, p->ssrc, &si, p->have_rx ? &rb : NULL,
                     "tingshuo-client");
  size_t len = n > 0 ? (size_t)n : 0;
  if (len && srtpctx_protect_rtcp(p->srtp, buf, &len, sizeof buf) == 0)
    send_to(p, buf, len, icectl_selected(p->ice));
}

static void play_out(struct peer *p) {
  int16_t pcm[OPUSC_FRAME];
  int have = p->jb && jitter_get(p->jb, pcm);
  if (p->prm.on_playout) p->prm.on_playout(p->prm.user, have ? pcm : NULL);
  if (!p->echo_ring) return;
  for (int i = 0; i < OPUSC_FRAME; i++) {
    p->echo_ring[p->ring_w] = have ? pcm[i] : 0;
    p->ring_w = (p->ring_w + 1) % p->ring_len;
  }
}

static int16_t sat16(double v) { return v > 32767 ? 32767 : v < -32768 ? -32768 : (int16_t)lrint(v); }

#define ECHO_RAMP_FRAMES 10 /* a volume change takes 200 ms */

/* The echo path's gain for the frame about to be sent. */
static double echo_gain(struct peer *p) {
  double g = p->prm.echo_gain, later = p->prm.echo_gain_later;
  uint64_t at = (uint64_t)(p->prm.echo_change_ms > 0 ? p->prm.echo_change_ms : 0) / 20;
  uint64_t f = p->echo_frames++;
  if (later <= 0 || f < at) return g;
  if (f >= at + ECHO_RAMP_FRAMES) return later;
  return g + (later - g) * (double)(f - at) / ECHO_RAMP_FRAMES;
}

static void send_audio(struct peer *p, const int16_t *pcm, const uint8_t *opus, size_t opus_len) {
  if (opus && !p->echo_ring) {
    send_rtp(p, opus, opus_len);
    return;
  }
  int16_t mic[OPUSC_FRAME];
  double gain = p->echo_ring ? echo_gain(p) : 0;
  /* The echo heard now left the speaker echo_delay samples ago. */
  size_t r = (p->ring_w + p->ring_len - p->echo_delay - OPUSC_FRAME) % (p->ring_len ? p->ring_len : 1);
  for (int i = 0; i < OPUSC_FRAME; i++) {
    double v = pcm ? pcm[i] : 0;
    if (p->echo_ring) v += gain * p->echo_ring[(r + (size_t)i) % p->ring_len];
    mic[i] = sat16(v);
  }
  if (!p->enc) {
    if (!(p->enc = opusc_enc_new(OPUSC_MIC, 0))) return;
    opusc_enc_set_max_rate(p->enc, p->max_rate);
  }
  uint8_t out[1500];
  int n = opusc_encode(p->enc, mic, out, sizeof out);
  if (n > 0) send_rtp(p, out, (size_t)n);
}

static void drive_connect(struct peer *p, uint64_t now_ms) {
  uint8_t buf[600];
  struct sockaddr_storage to;
  int n;
  while ((n = icectl_poll(p->ice, now_ms, buf, sizeof buf, &to)) > 0)
    send_to(p, buf, (size_t)n, (struct sockaddr *)&to);
  int timeout = p->prm.connect_timeout_ms > 0 ? p->prm.connect_timeout_ms : 10000;
  if (p->state == PEER_CHECKING && icectl_failed(p->ice, now_ms, timeout))
    fail(p, "ICE failed: no answer to connectivity checks sent to %s", p->remote_desc);
  if (p->state == PEER_DTLS) {
    if (dtls_session_timeout_ms(p->dtls) == 0) dtls_session_on_timer(p->dtls);
    if (now_ms > p->started_ms + (uint64_t)timeout)
      fail(p, "%s", "DTLS handshake did not complete (no reply to our ClientHello)");
  }
}

void peer_tick(struct peer *p, uint64_t now_ms, const int16_t *pcm, const uint8_t *opus,
               size_t opus_len) {
  if (p->state == PEER_NEW || p->state == PEER_FAILED) return;
  if (p->state != PEER_CONNECTED) {
    drive_connect(p, now_ms);
    return;
  }
  uint8_t buf[600];
  struct sockaddr_storage to;
  int n;
  while ((n = icectl_poll(p->ice, now_ms, buf, sizeof buf, &to)) > 0) /* consent */
    send_to(p, buf, (size_t)n, (struct sockaddr *)&to);
  if (icectl_failed(p->ice, now_ms, 0)) {
    fail(p, "%s", "ICE consent lost: the server stopped answering checks");
    return;
  }
  play_out(p);
  p->now_ms = now_ms;
  send_audio(p, pcm, opus, opus_len);
  send_held(p);
  if (now_ms >= p->next_rtcp_ms) {
    send_rtcp(p, now_ms);
    p->next_rtcp_ms = now_ms + RTCP_INTERVAL_MS;
  }
}
