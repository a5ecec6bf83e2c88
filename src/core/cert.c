/*
 * Self-signed certificates.
 *
 * Two parts of the server need one: HTTPS when the operator brings no
 * certificate, and DTLS, where WebRTC authenticates the certificate by the
 * fingerprint in the SDP rather than by a chain, so a fresh self-signed one
 * per process is exactly right. The serial number is random (RFC 5280 asks
 * for uniqueness per issuer, and every certificate here is its own issuer).
 */
#include "core/cert.h"

#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

static int add_san(X509 *x, const char *san) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
  if (!ext) return 0;
  int ok = X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  return ok;
}

static int random_serial(X509 *x) {
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return 0;
  serial[0] &= 0x7f; /* positive */
  BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
  int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
  BN_free(bn);
  return ok;
}

X509 *cert_self_signed(EVP_PKEY *key, const char *cn, int days, const char *san) {
  X509 *x = X509_new();
  if (!x) return NULL;
  X509_NAME *name = X509_get_subject_name(x);
  int ok = random_serial(x) && X509_set_version(x, 2) &&
           X509_gmtime_adj(X509_getm_notBefore(x), -86400) &&
           X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) && X509_set_pubkey(x, key) &&
           X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) &&
           X509_set_issuer_name(x, name) && (!san || add_san(x, san)) &&
           X509_sign(x, key, EVP_sha256());
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}
