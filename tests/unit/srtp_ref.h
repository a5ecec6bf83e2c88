/*
 * srtp_ref: a libsrtp2 session keyed as srtpctx keys one direction, the
 * reference that test_srtpctx checks interop against and bench_srtp times
 * against. Only those two link libsrtp2; the server does not.
 */
#ifndef TS_TESTS_SRTP_REF_H
#define TS_TESTS_SRTP_REF_H

#include <srtp2/srtp.h>
#include <stdint.h>
#include <string.h>

#include "rtc/dtls.h"

/* One direction: `inbound` unprotects the peer's packets, else protects ours. */
static inline srtp_err_status_t srtp_ref_session(srtp_t *out, int profile, const uint8_t *key,
                                                 const uint8_t *salt, size_t saltlen,
                                                 int inbound) {
  srtp_policy_t pol;
  memset(&pol, 0, sizeof pol);
  if (profile == DTLS_SRTP_AEAD_AES_128_GCM) {
    srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol.rtp);
    srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol.rtcp);
  } else {
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtcp);
  }
  uint8_t master[16 + 14];
  memcpy(master, key, 16);
  memcpy(master + 16, salt, saltlen);
  pol.key = master;
  pol.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
  pol.window_size = 1024; /* as srtpctx keeps its RTP replay window */
  return srtp_create(out, &pol);
}

#endif
