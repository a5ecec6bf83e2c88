/*
 * make_seeds: writes the generated part of the seed corpus (fuzz/corpus/),
 * with the project's own builders so the seeds are what peers really send.
 *
 *   fuzz_make_seeds DIR      (DIR is fuzz/corpus; existing files are overwritten)
 *
 * STUN: ICE checks as browsers send them to us (USERNAME "our 8-character
 * ufrag:their ufrag", PRIORITY, ICE-CONTROLLING,
 * USE-CANDIDATE, a comprehension-optional attribute we do not know,
 * MESSAGE-INTEGRITY with RFC 5769's password, FINGERPRINT), a role conflict,
 * an unknown comprehension-required attribute, and our own responses. RTP:
 * streams of real Opus (a tone, coded as a microphone and as the agent) in the
 * replay's length-prefixed form, with a lost, a reordered and a duplicate
 * packet. RTCP: the compounds a sender and a receiver send, and a BYE.
 * Call tokens: minted by calltoken_mint, and their payloads.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "app/calltoken.h"
#include "audio/opus_codec.h"
#include "rtc/rtcp.h"
#include "rtc/rtp.h"
#include "rtc/stun.h"

static const char *dir;

static void put(const char *sub, const char *name, const void *p, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

static void stun_seeds(void) {
  const uint8_t tx[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const char *key = "VOkJxbRl1RmTxUk/WvJxBt";
  uint8_t buf[548];
  struct stun_writer w;
  uint16_t net_info[2] = {htons(1), htons(10)};

  stun_begin(&w, buf, sizeof buf, STUN_REQUEST, STUN_BINDING, tx);
  stun_put(&w, STUN_ATTR_USERNAME, "ABCDEFGH:evtj", 13);
  stun_put(&w, 0xC057, net_info, sizeof net_info); /* GOOG-NETWORK-INFO, as Chrome sends */
  stun_put_u64(&w, STUN_ATTR_ICE_CONTROLLING, 0x932ff9b151263b36ull);
  stun_put(&w, STUN_ATTR_USE_CANDIDATE, NULL, 0);
  stun_put_u32(&w, STUN_ATTR_PRIORITY, 0x6e0001ff);
  int n = stun_finish(&w, key);
  put("stun", "chrome-style-check-use-candidate", buf, (size_t)n);

  stun_begin(&w, buf, sizeof buf, STUN_REQUEST, STUN_BINDING, tx);
  stun_put(&w, STUN_ATTR_USERNAME, "ABCDEFGH:evtj", 13);
  stun_put_u64(&w, STUN_ATTR_ICE_CONTROLLED, 7);
  stun_put_u32(&w, STUN_ATTR_PRIORITY, 0x7e0001ff);
  n = stun_finish(&w, key);
  put("stun", "role-conflict-controlled", buf, (size_t)n);

  stun_begin(&w, buf, sizeof buf, STUN_REQUEST, STUN_BINDING, tx);
  stun_put(&w, STUN_ATTR_USERNAME, "ABCDEFGH:evtj", 13);
  stun_put(&w, 0x0031, "xy", 2); /* comprehension-required, unknown */
  stun_put(&w, STUN_ATTR_SOFTWARE, "fuzz seed", 9);
  n = stun_finish(&w, key);
  put("stun", "unknown-required-attribute", buf, (size_t)n);

  stun_begin(&w, buf, sizeof buf, STUN_REQUEST, STUN_BINDING, tx);
  n = stun_finish(&w, NULL);
  put("stun", "bare-request-fingerprint-only", buf, (size_t)n);

  stun_begin(&w, buf, sizeof buf, STUN_INDICATION, STUN_BINDING, tx);
  n = stun_finish(&w, NULL);
  put("stun", "binding-indication", buf, (size_t)n);

  struct stun_msg req;
  stun_begin(&w, buf, sizeof buf, STUN_REQUEST, STUN_BINDING, tx);
  stun_put(&w, STUN_ATTR_USERNAME, "ABCDEFGH:evtj", 13);
  n = stun_finish(&w, key);
  uint8_t out[548];
  if (stun_parse(buf, (size_t)n, &req) == 0) {
    struct sockaddr_in6 from = {.sin6_family = AF_INET6, .sin6_port = htons(61000)};
    inet_pton(AF_INET6, "2001:db8::7", &from.sin6_addr);
    int m = stun_binding_success(&req, (struct sockaddr *)&from, key, out, sizeof out);
    put("stun", "success-response-ipv6", out, (size_t)m);
    m = stun_binding_error(&req, 401, NULL, out, sizeof out);
    put("stun", "error-response-401", out, (size_t)m);
  }
}

/* One packet behind its 2-byte length, as fuzz_rtp reads a stream. */
static size_t frame(uint8_t *s, size_t off, const uint8_t *pkt, size_t n) {
  s[off] = (uint8_t)(n >> 8), s[off + 1] = (uint8_t)n;
  memcpy(s + off + 2, pkt, n);
  return off + 2 + n;
}

static void rtp_stream(const char *name, enum opusc_kind kind, int bitrate, int npkts) {
  struct opusc_enc *enc = opusc_enc_new(kind, bitrate);
  if (!enc) exit(1);
  static uint8_t stream[64 * 1024];
  uint8_t pkts[64][400];
  size_t lens[64];
  int16_t pcm[OPUSC_FRAME];
  for (int i = 0; i < npkts && i < 64; i++) {
    for (int k = 0; k < OPUSC_FRAME; k++) {
      double t = (i * OPUSC_FRAME + k) / 48000.0;
      pcm[k] = (int16_t)(9000 * sin(2 * M_PI * 220 * t) * (0.5 + 0.5 * sin(2 * M_PI * 3 * t)));
    }
    size_t h = rtp_write_header(pkts[i], i == 0, 111, (uint16_t)(65530 + i), 960u * (uint32_t)i,
                                0xdeadbeef);
    int n = opusc_encode(enc, pcm, pkts[i] + h, sizeof pkts[i] - h);
    if (n < 0) exit(1);
    lens[i] = h + (size_t)n;
  }
  /* In order except: packet 3 lost, 5 and 6 swapped, 8 twice. */
  size_t off = 0;
  for (int i = 0; i < npkts && i < 64; i++) {
    int j = i == 5 ? 6 : i == 6 ? 5 : i;
    if (j == 3) continue;
    off = frame(stream, off, pkts[j], lens[j]);
    if (j == 8) off = frame(stream, off, pkts[j], lens[j]);
  }
  put("rtp", name, stream, off);
  opusc_enc_free(enc);
}

static void rtcp_seeds(void) {
  uint8_t buf[256];
  struct rtp_report_block rb = {.ssrc = 0xdeadbeef, .fraction_lost = 12, .cumulative_lost = -3,
                                .highest_seq = 70000, .jitter = 120, .lsr = 0x12345678, .dlsr = 655};
  struct rtcp_sender_info si = {.ntp = rtcp_ntp_from_ms(1700000000123ull), .rtp_ts = 96000,
                                .packets = 100, .octets = 8000};
  int n = rtcp_build(buf, sizeof buf, 1234, &si, &rb, "browser-cname");
  put("rtcp", "sr-with-block-and-sdes", buf, (size_t)n);
  n = rtcp_build(buf, sizeof buf, 1234, NULL, &rb, "x");
  put("rtcp", "rr-with-block-and-sdes", buf, (size_t)n);
  n = rtcp_build(buf, sizeof buf, 1234, NULL, NULL, "x");
  /* A browser's goodbye: RR, SDES, BYE with a reason. */
  static const uint8_t bye[] = {0x81, RTCP_BYE, 0x00, 0x03, 0x00, 0x00, 0x04, 0xd2,
                                0x04, 'g',      'o',  'n',  'e',  0,    0,    0};
  memcpy(buf + n, bye, sizeof bye);
  put("rtcp", "rr-sdes-bye", buf, (size_t)n + sizeof bye);
  n = rtcp_build(buf, sizeof buf, 1234, &si, NULL, "x");
  memcpy(buf + n, bye, sizeof bye);
  put("rtcp", "sr-sdes-bye", buf, (size_t)n + sizeof bye);
}

static void token_seeds(void) {
  const char *secret = "fuzzing-secret-0123456789abcdef"; /* the one fuzz_calltoken uses */
  json_t *settings = json_pack("{s:s,s:s,s:i,s:s}", "language", "zh", "voice", "alloy", "rate",
                               120, "system_prompt", "You are a booking assistant.");
  struct {
    const char *name, *sub;
    json_t *settings;
    long long exp;
  } t[] = {
      {"minted-plain", NULL, NULL, 1900000000},
      {"minted-sub", "visitor-4711@example.com", NULL, 1900000000},
      {"minted-sub-settings", "visitor-42", settings, 1900000000},
      {"minted-expired", "late", NULL, 1700000000},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char *tok = NULL;
    if (calltoken_mint(secret, t[i].exp, t[i].sub, t[i].settings, &tok) != 0) exit(1);
    put("calltoken", t[i].name, tok, strlen(tok));
    free(tok);
  }
  /* Payloads, which the target also signs itself. */
  const char *payloads[] = {
      "{\"exp\":1900000000}",
      "{\"exp\":1900000000,\"sub\":\"visitor-42\",\"settings\":{\"language\":\"en\",\"rate\":90}}",
      "{\"exp\":1900000000,\"sub\":\"x\",\"extra\":1}",
      "{\"exp\":-1}",
  };
  for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
    char name[32];
    snprintf(name, sizeof name, "payload-%zu.json", i);
    put("calltoken", name, payloads[i], strlen(payloads[i]));
  }
  json_decref(settings);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  dir = argv[1];
  stun_seeds();
  rtp_stream("opus-mic-stream", OPUSC_MIC, 32000, 12);
  rtp_stream("opus-agent-stream", OPUSC_AGENT, 64000, 12);
  rtcp_seeds();
  token_seeds();
  return 0;
}
