/*
 * srtpctx: one call's SRTP and SRTCP protection (RFC 3711, RFC 7714) on
 * OpenSSL's EVP interface, keyed from DTLS-SRTP. The prefix is not srtp_,
 * which is libsrtp's own (the tests link libsrtp2 to check interop).
 */
#ifndef TS_RTC_SRTPCTX_H
#define TS_RTC_SRTPCTX_H

#include <stddef.h>
#include <stdint.h>

/* Room to leave after a packet for protection (auth tag, SRTCP index). */
#define SRTPCTX_MAX_OVERHEAD 148

/*
 * Once per process, before any context; and once at exit. Init checks that
 * OpenSSL provides AES-128-CTR, AES-128-GCM and HMAC (-EIO if not); neither
 * holds any state.
 */
int srtpctx_global_init(void);
void srtpctx_global_shutdown(void);

struct srtpctx;

/*
 * `profile` is the DTLS-SRTP profile id (1 = AES128_CM_SHA1_80,
 * 7 = AEAD_AES_128_GCM), `material` the RFC 5764 4.2 keying material, and
 * `is_client` our DTLS role, which says which half of it is ours.
 */
int srtpctx_new(struct srtpctx **out, int profile, const uint8_t *material, size_t len,
                int is_client);
void srtpctx_free(struct srtpctx *c);

/*
 * In place; *len grows by the overhead. -ENOSPC when `cap` is too small,
 * -ENOBUFS for a ninth SSRC (eight are tracked a direction).
 */
int srtpctx_protect_rtp(struct srtpctx *c, uint8_t *pkt, size_t *len, size_t cap);
int srtpctx_protect_rtcp(struct srtpctx *c, uint8_t *pkt, size_t *len, size_t cap);
/*
 * In place; *len shrinks. -EACCES on authentication failure, replay, a
 * packet too old for the window or a ninth SSRC; -EBADMSG if malformed.
 */
int srtpctx_unprotect_rtp(struct srtpctx *c, uint8_t *pkt, size_t *len);
int srtpctx_unprotect_rtcp(struct srtpctx *c, uint8_t *pkt, size_t *len);

#endif
