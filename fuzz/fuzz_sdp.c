/*
 * fuzz_sdp: the text of an offer, as it arrives in a page's `offer` message.
 *
 * A parsed offer is read through every accessor the call setup uses and
 * answered the way the server answers. The answer is our own text built
 * from the offer's tokens: it must parse again, keep the offer's Opus
 * payload type and mid, and carry no line the offer smuggled in (a token
 * holding a CR or LF would start a new line of our answer).
 */
#include <string.h>

#include "fuzz.h"
#include "rtc/sdp.h"

/* Our answer has exactly the line kinds we write; anything else came from the offer. */
static void check_lines(const char *sdp) {
  for (const char *line = sdp; *line;) {
    const char *end = strstr(line, "\r\n");
    FUZZ_CHECK(end != NULL); /* every line ends with CRLF, none with a bare CR or LF */
    FUZZ_CHECK(end - line >= 2 && line[1] == '=');
    FUZZ_CHECK(strchr("vostcma", line[0]) != NULL);
    for (const char *c = line; c < end; c++) FUZZ_CHECK(*c != '\r' && *c != '\n' && *c != '\0');
    line = end + 2;
  }
}

static void answer(const struct sdp_session *offer) {
  struct sdp_answer_params ap = {0};
  ap.ice_ufrag = "srvu";
  ap.ice_pwd = "serverpassword0123456789";
  ap.fingerprint = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:"
                   "01:23:45:67:89";
  ap.ssrc = 0x12345678;
  ap.cname = "fuzzcall";
  ap.port = 50000;
  ap.candidates[0] = "192.0.2.1";
  ap.candidates[1] = "2001:db8::1";
  ap.ncandidates = 2;
  ap.ice_lite = 1;
  ap.max_playback_rate = 16000;
  char *text = NULL;
  if (sdp_build_answer(offer, &ap, &text) != 0) {
    FUZZ_CHECK(text == NULL);
    return;
  }
  FUZZ_CHECK(text != NULL);
  check_lines(text);
  struct sdp_session *back = NULL;
  char err[256];
  int rc = sdp_parse(text, strlen(text), &back, err, sizeof err);
  if (rc != 0) fprintf(stderr, "our answer does not parse: %s\n%s", err, text);
  FUZZ_CHECK(rc == 0);
  FUZZ_CHECK(sdp_opus_pt(back) == sdp_opus_pt(offer));
  FUZZ_CHECK(strcmp(sdp_audio_mid(back), sdp_audio_mid(offer)) == 0);
  FUZZ_CHECK(strcmp(sdp_ice_pwd(back), ap.ice_pwd) == 0);
  FUZZ_CHECK(sdp_media_count(back) == sdp_media_count(offer));
  sdp_session_free(back);
  free(text);
}

static void read_all(const struct sdp_session *s) {
  const char *fields[] = {sdp_ice_ufrag(s),  sdp_ice_pwd(s), sdp_fingerprint_alg(s),
                          sdp_fingerprint(s), sdp_setup(s),  sdp_audio_mid(s)};
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    if (fields[i]) FUZZ_CHECK(strlen(fields[i]) < SDP_MAX_SIZE);
  FUZZ_CHECK(sdp_opus_pt(s) >= 0 && sdp_opus_pt(s) < 128);
  int te = sdp_telephone_event_pt(s);
  FUZZ_CHECK(te >= -1 && te < 128);
  FUZZ_CHECK(sdp_media_count(s) >= 1 && sdp_media_count(s) <= SDP_MAX_MEDIA);
  char v[64];
  const char *params[] = {"useinbandfec", "minptime", "maxplaybackrate", "stereo", ""};
  for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
    if (sdp_opus_param(s, params[i], v, sizeof v) == 0) FUZZ_CHECK(strlen(v) < sizeof v);
  int nc = sdp_candidate_count(s);
  FUZZ_CHECK(nc >= 0 && nc <= SDP_MAX_CANDIDATES);
  for (int i = 0; i < nc; i++) {
    char ip[64];
    int port = -1;
    if (sdp_candidate(s, i, ip, sizeof ip, &port) == 0)
      FUZZ_CHECK(strlen(ip) < sizeof ip && port >= 0 && port <= 65535);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Exactly `size` bytes with no terminating NUL: the parser must honour the length. */
  char *text = malloc(size ? size : 1);
  if (!text) return 0;
  if (size) memcpy(text, data, size);
  struct sdp_session *s = NULL;
  char err[256];
  int rc = sdp_parse(text, size, &s, err, sizeof err);
  free(text);
  if (rc != 0) {
    FUZZ_CHECK(rc < 0 && s == NULL && strlen(err) > 0 && strlen(err) < sizeof err);
    return 0;
  }
  FUZZ_CHECK(s != NULL);
  read_all(s);
  answer(s);
  sdp_session_free(s);
  return 0;
}
