/*
 * SRTP contexts.
 *
 * DTLS-SRTP exports client_key | server_key | client_salt | server_salt
 * (RFC 5764 4.2). Each side protects with its own half and unprotects with
 * the peer's, so a call has two libsrtp sessions: outbound keyed with our
 * key and salt (ssrc_any_outbound), inbound with the peer's
 * (ssrc_any_inbound). Two sessions rather than one with two policies keep
 * a peer's packets from ever being checked against our own key.
 *
 * libsrtp keeps replay windows itself; a replayed or forged packet comes
 * back as an error and is simply dropped by the caller.
 */
#include "rtc/srtpctx.h"

#include <errno.h>
#include <srtp2/srtp.h>
#include <stdlib.h>
#include <string.h>

#include "rtc/dtls.h"

struct srtpctx {
  srtp_t in, out;
};

int srtpctx_global_init(void) { return srtp_init() == srtp_err_status_ok ? 0 : -EIO; }
void srtpctx_global_shutdown(void) { srtp_shutdown(); }

static int session(srtp_t *out, int profile, const uint8_t *key, const uint8_t *salt,
                   size_t keylen, size_t saltlen, int inbound) {
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
  memcpy(master, key, keylen);
  memcpy(master + keylen, salt, saltlen);
  pol.key = master;
  pol.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
  pol.window_size = 1024;
  pol.allow_repeat_tx = 0;
  int rc = srtp_create(out, &pol) == srtp_err_status_ok ? 0 : -EIO;
  memset(master, 0, sizeof master);
  return rc;
}

int srtpctx_new(struct srtpctx **out, int profile, const uint8_t *material, size_t len,
                int is_client) {
  size_t keylen = 16, saltlen;
  if (profile == DTLS_SRTP_AEAD_AES_128_GCM) saltlen = 12;
  else if (profile == DTLS_SRTP_AES128_CM_SHA1_80) saltlen = 14;
  else return -EINVAL;
  if (len != 2 * (keylen + saltlen)) return -EINVAL;
  const uint8_t *ck = material, *sk = material + keylen;
  const uint8_t *cs = material + 2 * keylen, *ss = cs + saltlen;
  struct srtpctx *c = calloc(1, sizeof *c);
  if (!c) return -ENOMEM;
  int rc = session(&c->out, profile, is_client ? ck : sk, is_client ? cs : ss, keylen, saltlen, 0);
  if (rc == 0) rc = session(&c->in, profile, is_client ? sk : ck, is_client ? ss : cs, keylen, saltlen, 1);
  if (rc) {
    srtpctx_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

void srtpctx_free(struct srtpctx *c) {
  if (!c) return;
  if (c->in) srtp_dealloc(c->in);
  if (c->out) srtp_dealloc(c->out);
  free(c);
}

static int protect(srtp_t s, uint8_t *pkt, size_t *len, size_t cap, int rtcp) {
  if (*len + SRTPCTX_MAX_OVERHEAD > cap || *len > INT32_MAX / 2) return -ENOSPC;
  int n = (int)*len;
  srtp_err_status_t st = rtcp ? srtp_protect_rtcp(s, pkt, &n) : srtp_protect(s, pkt, &n);
  if (st != srtp_err_status_ok) return -EIO;
  *len = (size_t)n;
  return 0;
}

static int unprotect(srtp_t s, uint8_t *pkt, size_t *len, int rtcp) {
  if (*len < 12 || *len > INT32_MAX / 2) return -EBADMSG;
  int n = (int)*len;
  srtp_err_status_t st = rtcp ? srtp_unprotect_rtcp(s, pkt, &n) : srtp_unprotect(s, pkt, &n);
  if (st != srtp_err_status_ok) return -EACCES;
  *len = (size_t)n;
  return 0;
}

int srtpctx_protect_rtp(struct srtpctx *c, uint8_t *p, size_t *len, size_t cap) { return protect(c->out, p, len, cap, 0); }
int srtpctx_protect_rtcp(struct srtpctx *c, uint8_t *p, size_t *len, size_t cap) { return protect(c->out, p, len, cap, 1); }
int srtpctx_unprotect_rtp(struct srtpctx *c, uint8_t *p, size_t *len) { return unprotect(c->in, p, len, 0); }
int srtpctx_unprotect_rtcp(struct srtpctx *c, uint8_t *p, size_t *len) { return unprotect(c->in, p, len, 1); }
