/* sdp: real browser offers, answers that parse back, and every way an offer can be unusable. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rtc/sdp.h"

static char *load(const char *name, size_t *len) {
  char path[512];
  snprintf(path, sizeof path, "%s/sdp/%s", TS_FIXTURES, name);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *buf = calloc(1, 65536);
  *len = fread(buf, 1, 65535, f);
  fclose(f);
  return buf;
}

static struct sdp_session *parse_fixture(const char *name) {
  size_t len;
  char *text = load(name, &len), err[256] = "";
  struct sdp_session *s = NULL;
  int rc = sdp_parse(text, len, &s, err, sizeof err);
  if (rc) fail_msg("%s: %s", name, err);
  free(text);
  return s;
}

#define SERVER_FP "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99"

static struct sdp_answer_params params(void) {
  struct sdp_answer_params ap = {.ice_ufrag = "srvU", .ice_pwd = "serverpassword0123456789", .fingerprint = SERVER_FP,
                                 .ssrc = 12345, .cname = "callcname", .port = 40000, .ice_lite = 1};
  ap.candidates[0] = "192.0.2.1";
  ap.candidates[1] = "2001:db8::1";
  ap.ncandidates = 2;
  return ap;
}

static void chrome(void **state) {
  struct sdp_session *s = parse_fixture("chrome_offer.sdp");
  assert_string_equal(sdp_ice_ufrag(s), "Qx3v");
  assert_string_equal(sdp_ice_pwd(s), "fX7g5sVb8WcN2hK9mPzR1tYq");
  assert_string_equal(sdp_fingerprint_alg(s), "sha-256");
  assert_true(strncmp(sdp_fingerprint(s), "3B:9C:0E", 8) == 0);
  assert_string_equal(sdp_setup(s), "actpass");
  assert_string_equal(sdp_audio_mid(s), "0");
  assert_int_equal(sdp_opus_pt(s), 111);
  assert_int_equal(sdp_telephone_event_pt(s), 110);
  char v[16];
  assert_int_equal(sdp_opus_param(s, "useinbandfec", v, sizeof v), 0);
  assert_string_equal(v, "1");
  assert_int_equal(sdp_opus_param(s, "stereo", v, sizeof v), -ENOENT);
  sdp_session_free(s);
}

static void firefox(void **state) {
  struct sdp_session *s = parse_fixture("firefox_offer.sdp");
  assert_int_equal(sdp_opus_pt(s), 109);
  assert_int_equal(sdp_telephone_event_pt(s), -1); /* only the 8 kHz one */
  assert_string_equal(sdp_ice_ufrag(s), "7c1d9e2a");
  assert_true(strncmp(sdp_fingerprint(s), "A1:0C", 5) == 0); /* session level */
  char v[16];
  assert_int_equal(sdp_opus_param(s, "stereo", v, sizeof v), 0); /* fmtp before rtpmap */
  assert_string_equal(v, "1");
  sdp_session_free(s);
}

static void safari(void **state) {
  struct sdp_session *s = parse_fixture("safari_offer.sdp");
  assert_int_equal(sdp_opus_pt(s), 111);
  assert_string_equal(sdp_ice_ufrag(s), "Fh2K");
  sdp_session_free(s);
}

/* Builds an answer and checks it is a valid SDP a browser would take. */
static void answer_round_trip(const char *fixture, int want_media) {
  struct sdp_session *offer = parse_fixture(fixture);
  struct sdp_answer_params ap = params();
  char *answer = NULL, err[256];
  assert_int_equal(sdp_build_answer(offer, &ap, &answer), 0);
  const char *must[] = {"a=ice-lite\r\n", "a=setup:passive\r\n", "a=rtcp-mux\r\n",
                        "minptime=10;useinbandfec=1", "a=ssrc:12345 cname:callcname\r\n",
                        "a=fingerprint:sha-256 " SERVER_FP "\r\n", "typ host\r\n", "192.0.2.1 40000 typ host",
                        "2001:db8::1 40000 typ host", "a=end-of-candidates\r\n", "a=sendrecv\r\n",
                        "a=ice-ufrag:srvU\r\n", "a=group:BUNDLE "};
  for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
    if (!strstr(answer, must[i])) fail_msg("%s answer lacks %s:\n%s", fixture, must[i], answer);
  struct sdp_session *back = NULL;
  if (sdp_parse(answer, strlen(answer), &back, err, sizeof err)) fail_msg("answer does not parse: %s\n%s", err, answer);
  assert_int_equal(sdp_media_count(back), want_media);
  assert_int_equal(sdp_opus_pt(back), sdp_opus_pt(offer));
  assert_string_equal(sdp_audio_mid(back), sdp_audio_mid(offer));
  assert_string_equal(sdp_ice_pwd(back), "serverpassword0123456789");
  assert_int_equal(sdp_candidate_count(back), 2);
  char ip[64];
  int port;
  assert_int_equal(sdp_candidate(back, 1, ip, sizeof ip, &port), 0);
  assert_string_equal(ip, "2001:db8::1");
  assert_int_equal(port, 40000);
  sdp_session_free(back);
  sdp_session_free(offer);
  free(answer);
}

static void answers(void **state) {
  answer_round_trip("chrome_offer.sdp", 1);
  answer_round_trip("firefox_offer.sdp", 1);
  answer_round_trip("safari_offer.sdp", 1);
  answer_round_trip("chrome_av_datachannel_offer.sdp", 3);
}

static void answer_asks_for_the_playback_rate_it_wants(void **state) {
  struct sdp_session *offer = parse_fixture("chrome_offer.sdp");
  struct sdp_answer_params ap = params();
  char *answer = NULL, err[256], v[16];
  assert_int_equal(sdp_build_answer(offer, &ap, &answer), 0);
  assert_null(strstr(answer, "maxplaybackrate")); /* not asked: the full band */
  free(answer);
  ap.max_playback_rate = 16000;
  assert_int_equal(sdp_build_answer(offer, &ap, &answer), 0);
  assert_non_null(strstr(answer, "minptime=10;useinbandfec=1;maxplaybackrate=16000\r\n"));
  struct sdp_session *back = NULL;
  if (sdp_parse(answer, strlen(answer), &back, err, sizeof err)) fail_msg("%s", err);
  assert_int_equal(sdp_opus_param(back, "maxplaybackrate", v, sizeof v), 0);
  assert_string_equal(v, "16000");
  sdp_session_free(back);
  sdp_session_free(offer);
  free(answer);
}

static void video_and_data_are_rejected_in_order(void **state) {
  struct sdp_session *offer = parse_fixture("chrome_av_datachannel_offer.sdp");
  struct sdp_answer_params ap = params();
  char *answer;
  assert_int_equal(sdp_build_answer(offer, &ap, &answer), 0);
  char *audio = strstr(answer, "m=audio 40000"), *video = strstr(answer, "m=video 0 "),
       *app = strstr(answer, "m=application 0 UDP/DTLS/SCTP webrtc-datachannel");
  assert_non_null(audio);
  assert_non_null(video);
  assert_non_null(app);
  assert_true(audio < video && video < app);
  assert_non_null(strstr(answer, "a=group:BUNDLE 0\r\n"));
  assert_non_null(strstr(video, "a=mid:1\r\n"));
  sdp_session_free(offer);
  free(answer);
}

static void ice_restart_has_new_credentials(void **state) {
  struct sdp_session *a = parse_fixture("chrome_offer.sdp"), *b = parse_fixture("chrome_ice_restart_offer.sdp");
  assert_string_not_equal(sdp_ice_ufrag(a), sdp_ice_ufrag(b));
  assert_string_equal(sdp_fingerprint(a), sdp_fingerprint(b));
  sdp_session_free(a);
  sdp_session_free(b);
}

static void expect_error(const char *text, const char *why) {
  struct sdp_session *s = NULL;
  char err[256] = "";
  int rc = sdp_parse(text, strlen(text), &s, err, sizeof err);
  if (rc == 0) fail_msg("accepted:\n%s", text);
  assert_int_equal(rc, -EBADMSG);
  assert_null(s);
  if (!strstr(err, why)) fail_msg("error \"%s\" lacks \"%s\"", err, why);
}

static void unusable_offers(void **state) {
  const char *head = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
  const char *ice = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=fingerprint:sha-256 AA:BB\r\n";
  char buf[2048];
  expect_error("", "v=0");
  expect_error("hello", "v=0");
  snprintf(buf, sizeof buf, "%s", head);
  expect_error(buf, "no m= section");
  snprintf(buf, sizeof buf, "%sm=video 9 UDP/TLS/RTP/SAVPF 96\r\n%s", head, ice);
  expect_error(buf, "no audio section");
  snprintf(buf, sizeof buf, "%sm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n%sa=rtpmap:0 PCMU/8000\r\n", head, ice);
  expect_error(buf, "no Opus codec");
  snprintf(buf, sizeof buf, "%sm=audio 9 RTP/AVP 111\r\n%sa=rtpmap:111 opus/48000/2\r\n", head, ice);
  expect_error(buf, "DTLS-SRTP");
  snprintf(buf, sizeof buf, "%sm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=fingerprint:sha-256 AA\r\n", head);
  expect_error(buf, "ice-ufrag");
  snprintf(buf, sizeof buf, "%sm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n", head);
  expect_error(buf, "fingerprint");
  snprintf(buf, sizeof buf, "%sm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=fingerprint:md5 AA\r\n", head);
  expect_error(buf, "md5");
  snprintf(buf, sizeof buf, "%sm=audio nine UDP/TLS/RTP/SAVPF 111\r\n", head);
  expect_error(buf, "m= line");
  snprintf(buf, sizeof buf, "%sgarbage line\r\n", head);
  expect_error(buf, "not an SDP line");
  char *big = malloc(70000);
  memset(big, 'a', 69999);
  big[69999] = 0;
  memcpy(big, "v=0\r\n", 5);
  expect_error(big, "larger than");
  snprintf(big, 70000, "%sa=x:", head);
  memset(big + strlen(big), 'x', 5000);
  big[strlen(head) + 4 + 5000] = 0;
  expect_error(big, "longer than");
  big[0] = 0;
  strcat(big, head);
  for (int i = 0; i < 17; i++) strcat(big, "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n");
  expect_error(big, "more than 16");
  free(big);
}

/* An offer whose one line `line` is added to a usable audio section. */
static void offer_plus(char *buf, size_t cap, const char *ice, const char *line) {
  snprintf(buf, cap,
           "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
           "a=rtpmap:111 opus/48000/2\r\n%s%s\r\n",
           ice, line);
}

#define GOOD_FP "a=fingerprint:sha-256 " SERVER_FP "\r\n"
#define GOOD_ICE "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n" GOOD_FP

static void long_ice_credentials_are_refused_not_cut(void **state) {
  char line[1024], buf[2048];
  const char *fp = GOOD_FP;
  char cred[300];
  memset(cred, 'x', 257);
  cred[257] = '\0';
  snprintf(line, sizeof line, "a=ice-ufrag:%s\r\na=ice-pwd:0123456789012345678901", cred);
  offer_plus(buf, sizeof buf, fp, line);
  expect_error(buf, "a=ice-ufrag longer than 256");
  snprintf(line, sizeof line, "a=ice-ufrag:abcd\r\na=ice-pwd:%s", cred);
  offer_plus(buf, sizeof buf, fp, line);
  expect_error(buf, "a=ice-pwd longer than 256");
  offer_plus(buf, sizeof buf, fp, "a=ice-ufrag:ab cd\r\na=ice-pwd:0123456789012345678901");
  expect_error(buf, "characters ICE does not allow");
  cred[256] = '\0'; /* exactly the limit is fine */
  snprintf(line, sizeof line, "a=ice-ufrag:%s\r\na=ice-pwd:%s", cred, cred);
  offer_plus(buf, sizeof buf, fp, line);
  struct sdp_session *s = NULL;
  char err[256];
  if (sdp_parse(buf, strlen(buf), &s, err, sizeof err)) fail_msg("%s", err);
  assert_int_equal(strlen(sdp_ice_ufrag(s)), 256);
  assert_int_equal(strlen(sdp_ice_pwd(s)), 256);
  sdp_session_free(s);
}

static void a_mid_cannot_write_lines_into_the_answer(void **state) {
  char buf[2048];
  offer_plus(buf, sizeof buf, GOOD_ICE, "a=mid:0\rx=injected");
  expect_error(buf, "CR inside a line");
  offer_plus(buf, sizeof buf, GOOD_ICE, "a=mid:0;x=1");
  expect_error(buf, "not a token");
  offer_plus(buf, sizeof buf, GOOD_ICE, "a=mid:0 1");
  expect_error(buf, "not a token");
  offer_plus(buf, sizeof buf, GOOD_ICE, "a=mid:");
  expect_error(buf, "not a token");
  char line[200] = "a=mid:";
  memset(line + 6, 'm', 64);
  line[70] = '\0';
  offer_plus(buf, sizeof buf, GOOD_ICE, line);
  expect_error(buf, "a=mid longer than 63");
  /* the other sections' words are echoed too, when they are rejected */
  snprintf(buf, sizeof buf,
           "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 \"x\"\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n" GOOD_ICE);
  expect_error(buf, "format list");
  snprintf(buf, sizeof buf,
           "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=vid<eo 9 UDP/TLS/RTP/SAVPF 96\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n" GOOD_ICE);
  expect_error(buf, "m= line");
  /* a good mid comes back as it was */
  offer_plus(buf, sizeof buf, GOOD_ICE, "a=mid:audio-0_x.1");
  struct sdp_session *s = NULL;
  char err[256], *answer = NULL;
  if (sdp_parse(buf, strlen(buf), &s, err, sizeof err)) fail_msg("%s", err);
  struct sdp_answer_params ap = params();
  assert_int_equal(sdp_build_answer(s, &ap, &answer), 0);
  assert_non_null(strstr(answer, "a=mid:audio-0_x.1\r\n"));
  free(answer);
  sdp_session_free(s);
}

static void fingerprints_have_their_hash_length(void **state) {
  char buf[2048];
  const char *ice = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n";
  offer_plus(buf, sizeof buf, ice, "a=fingerprint:sha-256 AA:BB");
  expect_error(buf, "sha-256 fingerprint is 32 hex bytes");
  offer_plus(buf, sizeof buf, ice, "a=fingerprint:sha-1 " SERVER_FP); /* 32 bytes for a 20-byte hash */
  expect_error(buf, "sha-1 fingerprint is 20 hex bytes");
  offer_plus(buf, sizeof buf, ice, "a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:"
                                   "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:GG");
  expect_error(buf, "hex bytes");
  char line[400] = "a=fingerprint:sha-512 ";
  size_t n = strlen(line);
  for (int i = 0; i < 65 * 3 - 1; i++) line[n + i] = i % 3 == 2 ? ':' : 'A';
  line[n + 65 * 3 - 1] = '\0';
  offer_plus(buf, sizeof buf, ice, line);
  expect_error(buf, "longer than 191");
}

/* Numbers that overflow were undefined for sscanf("%d"); glibc wrapped 2^32 + 111 to Opus's 111. */
static void numbers_out_of_range_are_refused(void **state) {
  char buf[2048];
  snprintf(buf, sizeof buf,
           "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
           "a=rtpmap:4294967407 opus/48000/2\r\n" GOOD_ICE);
  expect_error(buf, "no Opus codec");
  snprintf(buf, sizeof buf,
           "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4294967305 UDP/TLS/RTP/SAVPF 111\r\n"
           "a=rtpmap:111 opus/48000/2\r\n" GOOD_ICE);
  expect_error(buf, "m= line");
  snprintf(buf, sizeof buf,
           "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9/x UDP/TLS/RTP/SAVPF 111\r\n"
           "a=rtpmap:111 opus/48000/2\r\n" GOOD_ICE);
  expect_error(buf, "m= line");
  /* a candidate with a port past 65535 is skipped, one in range is kept */
  offer_plus(buf, sizeof buf, GOOD_ICE,
             "a=candidate:1 1 udp 2130706431 192.0.2.9 4294967297 typ host\r\n"
             "a=candidate:2 1 udp 2130706431 192.0.2.8 5000 typ host");
  struct sdp_session *s = NULL;
  char err[256], ip[64];
  int port;
  if (sdp_parse(buf, strlen(buf), &s, err, sizeof err)) fail_msg("%s", err);
  assert_int_equal(sdp_candidate_count(s), 1);
  assert_int_equal(sdp_candidate(s, 0, ip, sizeof ip, &port), 0);
  assert_string_equal(ip, "192.0.2.8");
  assert_int_equal(port, 5000);
  sdp_session_free(s);
}

static void fuzz_fixtures(void **state) {
  const char *names[] = {"chrome_offer.sdp", "firefox_offer.sdp", "safari_offer.sdp", "chrome_av_datachannel_offer.sdp"};
  unsigned seed = 17;
  for (int i = 0; i < 20000; i++) {
    size_t len;
    char *text = load(names[i % 4], &len), err[256];
    int edits = 1 + rand_r(&seed) % 8;
    for (int k = 0; k < edits && len > 0; k++) {
      size_t at = (size_t)rand_r(&seed) % len;
      switch (rand_r(&seed) % 3) {
      case 0: text[at] = (char)(rand_r(&seed) % 256); break;
      case 1: len = at; break; /* truncate */
      default: text[at] = "\n\r :=/0123456789"[rand_r(&seed) % 16];
      }
    }
    struct sdp_session *s = NULL;
    if (sdp_parse(text, len, &s, err, sizeof err) == 0) {
      struct sdp_answer_params ap = params();
      char *answer = NULL;
      if (sdp_build_answer(s, &ap, &answer) == 0) free(answer);
      sdp_session_free(s);
    }
    free(text);
  }
}

static void client_offer_parses(void **state) {
  struct sdp_answer_params p = params();
  p.ice_lite = 0;
  char *offer, err[256];
  assert_int_equal(sdp_build_offer(&p, &offer), 0);
  struct sdp_session *s;
  if (sdp_parse(offer, strlen(offer), &s, err, sizeof err)) fail_msg("%s\n%s", err, offer);
  assert_string_equal(sdp_setup(s), "actpass");
  assert_int_equal(sdp_opus_pt(s), 111);
  assert_null(strstr(offer, "ice-lite"));
  sdp_session_free(s);
  free(offer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(chrome),  cmocka_unit_test(firefox), cmocka_unit_test(safari),
      cmocka_unit_test(answers),
      cmocka_unit_test(answer_asks_for_the_playback_rate_it_wants), cmocka_unit_test(video_and_data_are_rejected_in_order),
      cmocka_unit_test(ice_restart_has_new_credentials), cmocka_unit_test(unusable_offers),
      cmocka_unit_test(fuzz_fixtures), cmocka_unit_test(client_offer_parses),
      cmocka_unit_test(long_ice_credentials_are_refused_not_cut),
      cmocka_unit_test(a_mid_cannot_write_lines_into_the_answer),
      cmocka_unit_test(fingerprints_have_their_hash_length),
      cmocka_unit_test(numbers_out_of_range_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
