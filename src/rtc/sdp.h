/*
 * sdp: the SDP of a WebRTC audio call (RFC 8866 syntax, JSEP RFC 8829).
 *
 * Parses a browser's offer (or a server's answer, for the client side) into
 * what the media path needs, and writes our answer or offer.
 */
#ifndef TS_RTC_SDP_H
#define TS_RTC_SDP_H

#include <stddef.h>
#include <stdint.h>

#define SDP_MAX_SIZE (64 * 1024)
#define SDP_MAX_MEDIA 16
#define SDP_MAX_CANDIDATES 8
#define SDP_ICE_MAX 256         /* ice-ufrag and ice-pwd, characters (RFC 8839 5.4) */
#define SDP_FINGERPRINT_MAX 191 /* "AB:CD:..." of sha-512, the longest hash DTLS checks */
#define SDP_MID_MAX 63

struct sdp_session;

/*
 * -EBADMSG (with `err` saying why) when the text cannot carry an audio call,
 * or holds a value we keep that breaks its grammar or does not fit: ICE
 * credentials, the fingerprint, a=mid and the m= line's words are refused,
 * never cut, and whatever the answer repeats must be an RFC 8866 token.
 */
int sdp_parse(const char *text, size_t len, struct sdp_session **out, char *err, size_t errlen);
void sdp_session_free(struct sdp_session *s);

/* Of the audio section (falling back to session level, as RFC 8839 allows). */
const char *sdp_ice_ufrag(const struct sdp_session *s);
const char *sdp_ice_pwd(const struct sdp_session *s);
const char *sdp_fingerprint_alg(const struct sdp_session *s); /* sha-1, -224, -256, -384 or -512 */
const char *sdp_fingerprint(const struct sdp_session *s);     /* "AB:CD:..." */
const char *sdp_setup(const struct sdp_session *s);           /* actpass | active | passive */
const char *sdp_audio_mid(const struct sdp_session *s);
int sdp_opus_pt(const struct sdp_session *s);
/* Copies the value of an Opus fmtp parameter (e.g. "useinbandfec"); -ENOENT when absent. */
int sdp_opus_param(const struct sdp_session *s, const char *name, char *value, size_t cap);
int sdp_telephone_event_pt(const struct sdp_session *s); /* -1 when absent */
int sdp_media_count(const struct sdp_session *s);
/* Candidates of the audio section as "ip port" strings, for the client side. */
int sdp_candidate_count(const struct sdp_session *s);
int sdp_candidate(const struct sdp_session *s, int i, char *ip, size_t ipcap, int *port);

struct sdp_answer_params {
  const char *ice_ufrag, *ice_pwd;
  const char *fingerprint; /* sha-256 */
  const char *setup;       /* NULL: "passive" */
  uint32_t ssrc;
  const char *cname;
  int port;
  const char *candidates[SDP_MAX_CANDIDATES]; /* IP addresses, all on `port` */
  size_t ncandidates;
  int ice_lite;
  int max_playback_rate; /* 0, or the highest rate we play, asked of the sender (RFC 7587) */
};

/* Our answer to `offer`; *out is malloc'd and the caller's to free. */
int sdp_build_answer(const struct sdp_session *offer, const struct sdp_answer_params *ap, char **out);
/* An audio-only offer (client side): Opus on payload type 111, setup:actpass. */
int sdp_build_offer(const struct sdp_answer_params *p, char **out);

#endif
