/*
 * SDP.
 *
 * The parser reads line by line ("x=value", CRLF or LF) and keeps only what
 * an audio call needs: per m-section its kind, port, protocol, formats,
 * mid, direction, rtcp-mux/rsize, ICE credentials, fingerprint, setup role,
 * rtpmap/fmtp of Opus and telephone-event, and candidates. Attributes may
 * sit at session level and apply to every section (RFC 8839 5.4, RFC 8122
 * 5); media-level ones win. Sizes are bounded before anything is copied,
 * and a value that does not fit is refused rather than cut: a cut ICE
 * password or fingerprint would only fail later, with a misleading reason.
 * Numbers are read with core/num (all digits, in range). Everything the
 * answer repeats back (mid, media kind, protocol, formats) must be an
 * RFC 8866 token, and a line may not hide a CR, so an offer cannot write
 * lines of its own into our answer.
 *
 * Validation is about what we can serve, and says so in words: a browser
 * developer reading "no Opus codec in the audio section" knows what to fix.
 *
 * The answer follows JSEP: the same number and order of m-sections, the
 * audio one accepted (ICE-lite, our host candidates, setup:passive, Opus
 * with minptime=10;useinbandfec=1 and, when asked, the maxplaybackrate we
 * want the browser to code for; our SSRC), every other one rejected with
 * port 0 and left out of BUNDLE.
 */
#include "rtc/sdp.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/num.h"

#define MAX_LINE 4096

struct media {
  char kind[16], proto[40], mid[SDP_MID_MAX + 1];
  int port;
  char fmt_text[256]; /* the format list as written, for rejected sections */
  char ufrag[SDP_ICE_MAX + 1], pwd[SDP_ICE_MAX + 1];
  char fp_alg[16], fp[SDP_FINGERPRINT_MAX + 1], setup[16], direction[16];
  int rtcp_mux, rtcp_rsize;
  int opus_pt, te_pt;
  char opus_fmtp[512];
  char cand_ip[SDP_MAX_CANDIDATES][64];
  int cand_port[SDP_MAX_CANDIDATES], ncand;
};

struct sdp_session {
  struct media session; /* session-level defaults */
  struct media media[SDP_MAX_MEDIA];
  int nmedia;
  int audio; /* index of the audio section */
};

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -EBADMSG;
}

static void copy(char *dst, size_t cap, const char *src, size_t n) {
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

static void copy_str(char *dst, size_t cap, const char *src) { copy(dst, cap, src, strlen(src)); }

/* --- the grammar of what is stored or echoed ------------------------------------- */

/* RFC 8866 token-char: visible ASCII but for the separators " ( ) , / : ; < = > ? @ [ \ ] */
static int token_char(int c) {
  return c == 0x21 || (c >= 0x23 && c <= 0x27) || c == 0x2a || c == 0x2b || c == 0x2d ||
         c == 0x2e || (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x5e && c <= 0x7e);
}

static int is_token(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!token_char((unsigned char)s[i])) return 0;
  return 1;
}

/* A transport protocol: tokens joined by "/" (RFC 8866 5.14). */
static int is_proto(const char *s, size_t n) {
  if (n == 0 || s[0] == '/' || s[n - 1] == '/') return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] != '/' && !token_char((unsigned char)s[i])) return 0;
  return 1;
}

/* RFC 8839 ice-char: ALPHA / DIGIT / "+" / "/". */
static int is_ice_chars(const char *s) {
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '+' && *s != '/') return 0;
  return 1;
}

/* The next word of *p (words are separated by spaces); an empty one at the end. */
struct word {
  const char *p;
  size_t n;
};

static struct word next_word(const char **p) {
  const char *s = *p + strspn(*p, " ");
  size_t n = strcspn(s, " ");
  *p = s + n;
  return (struct word){s, n};
}

static int word_is(struct word w, const char *lit) { return w.n == strlen(lit) && strncasecmp(w.p, lit, w.n) == 0; }

/* Copies a word that must fit; 0 or -1. */
static int take(char *dst, size_t cap, struct word w) {
  if (w.n == 0 || w.n >= cap) return -1;
  copy(dst, cap, w.p, w.n);
  return 0;
}

/* "a=name:value" -> value after "name:", or NULL. */
static const char *attr(const char *line, const char *name) {
  size_t n = strlen(name);
  if (strncmp(line, "a=", 2) || strncmp(line + 2, name, n)) return NULL;
  if (line[2 + n] == ':') return line + 3 + n;
  if (line[2 + n] == '\0') return line + 2 + n;
  return NULL;
}

/* "audio 9 UDP/TLS/RTP/SAVPF 111 63 9" (the port may carry "/count"). */
static int parse_m(struct media *m, const char *v, char *err, size_t errlen) {
  const char *p = v;
  struct word kind = next_word(&p), port = next_word(&p), proto = next_word(&p);
  const char *slash = memchr(port.p, '/', port.n);
  size_t port_n = slash ? (size_t)(slash - port.p) : port.n;
  int count;
  if (!is_token(kind.p, kind.n) || take(m->kind, sizeof m->kind, kind) ||
      num_parse_int(port.p, port_n, 0, 65535, &m->port) ||
      (slash && num_parse_int(slash + 1, port.n - port_n - 1, 1, 65535, &count)) ||
      !is_proto(proto.p, proto.n) || take(m->proto, sizeof m->proto, proto))
    return fail(err, errlen, "malformed m= line \"%.60s\"", v);
  p += strspn(p, " ");
  size_t n = strlen(p);
  while (n && p[n - 1] == ' ') n--;
  if (n == 0 || n >= sizeof m->fmt_text) return fail(err, errlen, "m= line with %s formats", n ? "too many" : "no");
  for (const char *f = p; f < p + n;) {
    struct word w = next_word(&f);
    if (!is_token(w.p, w.n)) return fail(err, errlen, "malformed format list in \"%.60s\"", v);
  }
  copy(m->fmt_text, sizeof m->fmt_text, p, n);
  m->opus_pt = m->te_pt = -1;
  return 0;
}

/* "111 opus/48000/2": only Opus and telephone-event at 48 kHz matter; others are ignored. */
static void parse_rtpmap(struct media *m, const char *v) {
  const char *p = v;
  struct word pt_w = next_word(&p), enc = next_word(&p);
  int pt, rate;
  const char *slash = memchr(enc.p, '/', enc.n);
  if (num_parse_int(pt_w.p, pt_w.n, 0, 127, &pt) || !slash) return;
  size_t name_n = (size_t)(slash - enc.p);
  const char *r = slash + 1, *r_end = enc.p + enc.n, *r_slash = memchr(r, '/', (size_t)(r_end - r));
  if (num_parse_int(r, (size_t)((r_slash ? r_slash : r_end) - r), 1, 1000000, &rate) || rate != 48000) return;
  if (name_n == 4 && strncasecmp(enc.p, "opus", 4) == 0 && m->opus_pt < 0) m->opus_pt = pt;
  if (name_n == 15 && strncasecmp(enc.p, "telephone-event", 15) == 0) m->te_pt = pt;
}

/* "foundation component transport priority address port typ type ..." (RFC 8839 5.1). */
static void parse_candidate(struct media *m, const char *v) {
  const char *p = v;
  struct word found = next_word(&p), comp_w = next_word(&p), proto = next_word(&p), prio_w = next_word(&p),
              ip = next_word(&p), port_w = next_word(&p), typ = next_word(&p), kind = next_word(&p);
  int comp, port;
  uint64_t prio;
  if (m->ncand >= SDP_MAX_CANDIDATES || found.n == 0 || kind.n == 0 || !word_is(typ, "typ")) return;
  if (num_parse_int(comp_w.p, comp_w.n, 1, 256, &comp) || comp != 1 || !word_is(proto, "udp") ||
      num_parse_u64(prio_w.p, prio_w.n, UINT32_MAX, &prio) ||
      num_parse_int(port_w.p, port_w.n, 1, 65535, &port) || take(m->cand_ip[m->ncand], sizeof m->cand_ip[0], ip))
    return;
  m->cand_port[m->ncand++] = port;
}

static int parse_fingerprint(struct media *m, const char *v, char *err, size_t errlen) {
  const char *sp = strchr(v, ' ');
  if (!sp || !is_token(v, (size_t)(sp - v)) || (size_t)(sp - v) >= sizeof m->fp_alg)
    return fail(err, errlen, "malformed a=fingerprint \"%.40s\"", v);
  if (strlen(sp + 1) > SDP_FINGERPRINT_MAX)
    return fail(err, errlen, "a=fingerprint longer than %d characters", SDP_FINGERPRINT_MAX);
  copy(m->fp_alg, sizeof m->fp_alg, v, (size_t)(sp - v));
  copy_str(m->fp, sizeof m->fp, sp + 1);
  return 0;
}

/* ICE credentials are refused rather than cut: a cut one would fail every check later, silently. */
static int parse_ice(char *dst, size_t cap, const char *v, const char *name, char *err, size_t errlen) {
  if (strlen(v) >= cap) return fail(err, errlen, "a=%s longer than %zu characters", name, cap - 1);
  if (!is_ice_chars(v)) return fail(err, errlen, "a=%s has characters ICE does not allow (RFC 8839)", name);
  copy_str(dst, cap, v);
  return 0;
}

static int parse_attribute(struct media *m, const char *line, char *err, size_t errlen) {
  const char *v;
  if ((v = attr(line, "ice-ufrag"))) return parse_ice(m->ufrag, sizeof m->ufrag, v, "ice-ufrag", err, errlen);
  if ((v = attr(line, "ice-pwd"))) return parse_ice(m->pwd, sizeof m->pwd, v, "ice-pwd", err, errlen);
  if ((v = attr(line, "fingerprint"))) return parse_fingerprint(m, v, err, errlen);
  if ((v = attr(line, "mid"))) {
    /* echoed into the answer, so it must be a token and nothing else (RFC 8843 / 8866) */
    if (!is_token(v, strlen(v))) return fail(err, errlen, "a=mid \"%.40s\" is not a token", v);
    if (strlen(v) > SDP_MID_MAX) return fail(err, errlen, "a=mid longer than %d characters", SDP_MID_MAX);
    copy_str(m->mid, sizeof m->mid, v);
  } else if ((v = attr(line, "setup"))) copy_str(m->setup, sizeof m->setup, v);
  else if ((v = attr(line, "rtcp-mux"))) m->rtcp_mux = 1;
  else if ((v = attr(line, "rtcp-rsize"))) m->rtcp_rsize = 1;
  else if ((v = attr(line, "rtpmap"))) parse_rtpmap(m, v);
  else if ((v = attr(line, "candidate"))) parse_candidate(m, v);
  else if (attr(line, "sendrecv") || attr(line, "sendonly") || attr(line, "recvonly") || attr(line, "inactive"))
    copy_str(m->direction, sizeof m->direction, line + 2);
  return 0;
}

static int parse_line(struct sdp_session *s, const char *line, char *err, size_t errlen) {
  if (strlen(line) < 2 || line[1] != '=' || !islower((unsigned char)line[0]))
    return fail(err, errlen, "not an SDP line: \"%.40s\"", line);
  if (line[0] == 'm') {
    if (s->nmedia >= SDP_MAX_MEDIA) return fail(err, errlen, "more than %d m= sections", SDP_MAX_MEDIA);
    return parse_m(&s->media[s->nmedia++], line + 2, err, errlen);
  }
  if (line[0] == 'a') {
    struct media *m = s->nmedia ? &s->media[s->nmedia - 1] : &s->session;
    return parse_attribute(m, line, err, errlen);
  }
  return 0;
}

/* Session-level values fill what a section left out. */
static void inherit(struct media *m, const struct media *sess) {
  if (!m->ufrag[0]) copy_str(m->ufrag, sizeof m->ufrag, sess->ufrag);
  if (!m->pwd[0]) copy_str(m->pwd, sizeof m->pwd, sess->pwd);
  if (!m->fp[0]) {
    copy_str(m->fp_alg, sizeof m->fp_alg, sess->fp_alg);
    copy_str(m->fp, sizeof m->fp, sess->fp);
  }
  if (!m->setup[0]) copy_str(m->setup, sizeof m->setup, sess->setup);
  if (!m->direction[0]) copy_str(m->direction, sizeof m->direction, sess->direction[0] ? sess->direction : "sendrecv");
}

/* The hashes RFC 8122 names that DTLS can check, by the bytes each gives; 0 for others. */
static int fingerprint_bytes(const char *alg) {
  static const struct {
    const char *name;
    int bytes;
  } hashes[] = {{"sha-1", 20}, {"sha-224", 28}, {"sha-256", 32}, {"sha-384", 48}, {"sha-512", 64}};
  for (size_t i = 0; i < sizeof hashes / sizeof *hashes; i++)
    if (strcasecmp(alg, hashes[i].name) == 0) return hashes[i].bytes;
  return 0;
}

/* "AB:CD:...": `bytes` pairs of hex digits, colon-separated (RFC 8122 5). */
static int fingerprint_shaped(const char *fp, int bytes) {
  if (strlen(fp) != (size_t)bytes * 3 - 1) return 0;
  for (size_t i = 0; fp[i]; i++)
    if (i % 3 == 2 ? fp[i] != ':' : !isxdigit((unsigned char)fp[i])) return 0;
  return 1;
}

static int validate(struct sdp_session *s, char *err, size_t errlen) {
  s->audio = -1;
  for (int i = 0; i < s->nmedia; i++) {
    inherit(&s->media[i], &s->session);
    if (s->audio < 0 && strcmp(s->media[i].kind, "audio") == 0 && s->media[i].port != 0) s->audio = i;
  }
  if (s->nmedia == 0) return fail(err, errlen, "no m= section");
  if (s->audio < 0) return fail(err, errlen, "no audio section");
  struct media *a = &s->media[s->audio];
  if (!strstr(a->proto, "SAVPF") && !strstr(a->proto, "SAVP"))
    return fail(err, errlen, "the audio section's protocol %s is not DTLS-SRTP (UDP/TLS/RTP/SAVPF)", a->proto);
  if (a->opus_pt < 0) return fail(err, errlen, "no Opus codec in the audio section");
  if (!a->ufrag[0] || !a->pwd[0]) return fail(err, errlen, "missing a=ice-ufrag or a=ice-pwd");
  if (strlen(a->ufrag) < 4 || strlen(a->pwd) < 22)
    return fail(err, errlen, "ICE credentials too short (RFC 8839 needs 4 and 22 characters)");
  if (!a->fp[0]) return fail(err, errlen, "missing a=fingerprint");
  int bytes = fingerprint_bytes(a->fp_alg);
  if (!bytes) return fail(err, errlen, "unsupported fingerprint hash \"%s\"", a->fp_alg);
  if (!fingerprint_shaped(a->fp, bytes))
    return fail(err, errlen, "a %s fingerprint is %d hex bytes separated by colons", a->fp_alg, bytes);
  return 0;
}

/* fmtp may come before rtpmap, so Opus's is looked up once the payload type is known. */
static void find_opus_fmtp(struct sdp_session *s, const char *text, size_t len) {
  struct media *a = &s->media[s->audio];
  char needle[32];
  int nl = snprintf(needle, sizeof needle, "a=fmtp:%d ", a->opus_pt), section = -1;
  for (const char *p = text, *end = text + len; p < end;) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
    if (n && p[n - 1] == '\r') n--;
    if (n >= 2 && p[0] == 'm' && p[1] == '=') section++;
    if (section == s->audio && n > (size_t)nl && strncmp(p, needle, (size_t)nl) == 0)
      copy(a->opus_fmtp, sizeof a->opus_fmtp, p + nl, n - (size_t)nl);
    if (!eol) break;
    p = eol + 1;
  }
}

int sdp_parse(const char *text, size_t len, struct sdp_session **out, char *err, size_t errlen) {
  if (len > SDP_MAX_SIZE) return fail(err, errlen, "SDP larger than %d bytes", SDP_MAX_SIZE);
  if (len < 3 || strncmp(text, "v=0", 3) != 0) return fail(err, errlen, "SDP must start with v=0");
  struct sdp_session *s = calloc(1, sizeof *s);
  if (!s) return -ENOMEM;
  char line[MAX_LINE];
  int rc = 0;
  for (size_t pos = 0; rc == 0 && pos < len;) {
    size_t n = 0;
    while (pos + n < len && text[pos + n] != '\n') n++;
    size_t l = n && text[pos + n - 1] == '\r' ? n - 1 : n;
    if (l >= MAX_LINE) rc = fail(err, errlen, "line longer than %d bytes", MAX_LINE);
    else if (memchr(text + pos, '\0', l)) rc = fail(err, errlen, "NUL byte in SDP");
    else if (memchr(text + pos, '\r', l)) rc = fail(err, errlen, "a CR inside a line (lines end with CRLF)");
    else if (l) {
      memcpy(line, text + pos, l);
      line[l] = '\0';
      rc = parse_line(s, line, err, errlen);
    }
    pos += n + 1;
  }
  if (rc == 0) rc = validate(s, err, errlen);
  if (rc) {
    free(s);
    return rc;
  }
  find_opus_fmtp(s, text, len);
  *out = s;
  return 0;
}

void sdp_session_free(struct sdp_session *s) { free(s); }

static const struct media *audio(const struct sdp_session *s) { return &s->media[s->audio]; }
const char *sdp_ice_ufrag(const struct sdp_session *s) { return audio(s)->ufrag; }
const char *sdp_ice_pwd(const struct sdp_session *s) { return audio(s)->pwd; }
const char *sdp_fingerprint_alg(const struct sdp_session *s) { return audio(s)->fp_alg; }
const char *sdp_fingerprint(const struct sdp_session *s) { return audio(s)->fp; }
const char *sdp_setup(const struct sdp_session *s) { return audio(s)->setup; }
const char *sdp_audio_mid(const struct sdp_session *s) { return audio(s)->mid; }
int sdp_opus_pt(const struct sdp_session *s) { return audio(s)->opus_pt; }
int sdp_telephone_event_pt(const struct sdp_session *s) { return audio(s)->te_pt; }
int sdp_media_count(const struct sdp_session *s) { return s->nmedia; }
int sdp_candidate_count(const struct sdp_session *s) { return audio(s)->ncand; }

int sdp_candidate(const struct sdp_session *s, int i, char *ip, size_t ipcap, int *port) {
  if (i < 0 || i >= audio(s)->ncand) return -EINVAL;
  snprintf(ip, ipcap, "%s", audio(s)->cand_ip[i]);
  *port = audio(s)->cand_port[i];
  return 0;
}

int sdp_opus_param(const struct sdp_session *s, const char *name, char *value, size_t cap) {
  const char *p = audio(s)->opus_fmtp;
  size_t n = strlen(name);
  while (*p) {
    p += strspn(p, " ;");
    if (strncasecmp(p, name, n) == 0 && p[n] == '=') {
      copy(value, cap, p + n + 1, strcspn(p + n + 1, ";"));
      return 0;
    }
    p += strcspn(p, ";");
  }
  return -ENOENT;
}

/* --- writing ------------------------------------------------------------------- */

struct buf {
  char *p;
  size_t len, cap;
  int err;
};

static void put(struct buf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->err = -EINVAL;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    char *grown = realloc(b->p, b->cap * 2 + (size_t)n);
    if (!grown) {
      b->err = -ENOMEM;
      return;
    }
    b->p = grown;
    b->cap = b->cap * 2 + (size_t)n;
  }
}

static const char *answer_direction(const char *offered) {
  if (strcmp(offered, "sendonly") == 0) return "recvonly";
  if (strcmp(offered, "recvonly") == 0) return "sendonly";
  if (strcmp(offered, "inactive") == 0) return "inactive";
  return "sendrecv";
}

static void session_header(struct buf *b, const struct sdp_answer_params *ap) {
  uint64_t id;
  RAND_bytes((unsigned char *)&id, sizeof id);
  put(b, "v=0\r\no=- %llu 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
      (unsigned long long)(id >> 2)); /* < 2^62, as JSEP asks */
  if (ap->ice_lite) put(b, "a=ice-lite\r\n");
}

/* ICE, DTLS, RTP lines for the audio section, shared by answers and offers. */
static void audio_lines(struct buf *b, const struct sdp_answer_params *ap, const char *mid,
                        const char *direction, int pt, int te_pt, int rsize) {
  put(b, "c=IN %s %s\r\n", ap->ncandidates && strchr(ap->candidates[0], ':') ? "IP6" : "IP4",
      ap->ncandidates ? ap->candidates[0] : "0.0.0.0");
  if (mid[0]) put(b, "a=mid:%s\r\n", mid); /* an offer without mids gets none back */
  put(b, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", ap->ice_ufrag, ap->ice_pwd);
  put(b, "a=fingerprint:sha-256 %s\r\na=setup:%s\r\na=%s\r\na=rtcp-mux\r\n", ap->fingerprint,
      ap->setup ? ap->setup : "passive", direction);
  if (rsize) put(b, "a=rtcp-rsize\r\n");
  put(b, "a=rtpmap:%d opus/48000/2\r\na=fmtp:%d minptime=10;useinbandfec=1", pt, pt);
  if (ap->max_playback_rate) put(b, ";maxplaybackrate=%d", ap->max_playback_rate);
  put(b, "\r\n");
  if (te_pt >= 0) put(b, "a=rtpmap:%d telephone-event/48000\r\n", te_pt);
  put(b, "a=ssrc:%u cname:%s\r\na=msid:tingshuo audio\r\n", ap->ssrc, ap->cname);
  for (size_t i = 0; i < ap->ncandidates; i++) {
    /* host type preference 126, local preference falling with order, component 1 */
    unsigned long prio = (126ul << 24) | ((65535ul - i) << 8) | 255ul;
    put(b, "a=candidate:%zu 1 udp %lu %s %d typ host\r\n", i + 1, prio, ap->candidates[i], ap->port);
  }
  if (ap->ncandidates) put(b, "a=end-of-candidates\r\n");
}

static int finish(struct buf *b, char **out) {
  if (b->err) {
    free(b->p);
    return b->err;
  }
  *out = b->p;
  return 0;
}

int sdp_build_answer(const struct sdp_session *offer, const struct sdp_answer_params *ap, char **out) {
  struct buf b = {.p = malloc(4096), .cap = 4096};
  if (!b.p) return -ENOMEM;
  const struct media *a = audio(offer);
  session_header(&b, ap);
  if (a->mid[0]) put(&b, "a=group:BUNDLE %s\r\n", a->mid);
  put(&b, "a=msid-semantic: WMS tingshuo\r\n");
  for (int i = 0; i < offer->nmedia; i++) {
    const struct media *m = &offer->media[i];
    if (i != offer->audio) { /* rejected: same kind and formats, port 0 */
      put(&b, "m=%s 0 %s %s\r\nc=IN IP4 0.0.0.0\r\n", m->kind, m->proto, m->fmt_text);
      if (m->mid[0]) put(&b, "a=mid:%s\r\n", m->mid);
      put(&b, "a=inactive\r\n");
      continue;
    }
    put(&b, "m=audio %d %s %d", ap->port ? ap->port : 9, m->proto, m->opus_pt);
    if (m->te_pt >= 0) put(&b, " %d", m->te_pt);
    put(&b, "\r\n");
    audio_lines(&b, ap, m->mid, answer_direction(m->direction), m->opus_pt, m->te_pt, m->rtcp_rsize);
  }
  return finish(&b, out);
}

int sdp_build_offer(const struct sdp_answer_params *p, char **out) {
  struct buf b = {.p = malloc(4096), .cap = 4096};
  if (!b.p) return -ENOMEM;
  session_header(&b, p);
  put(&b, "a=group:BUNDLE 0\r\na=msid-semantic: WMS tingshuo\r\n");
  put(&b, "m=audio %d UDP/TLS/RTP/SAVPF 111\r\n", p->port ? p->port : 9);
  struct sdp_answer_params q = *p;
  q.setup = p->setup ? p->setup : "actpass";
  audio_lines(&b, &q, "0", "sendrecv", 111, -1, 1);
  return finish(&b, out);
}
