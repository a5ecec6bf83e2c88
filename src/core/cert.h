/* cert: self-signed X.509 certificates, for HTTPS and for DTLS. */
#ifndef TS_CORE_CERT_H
#define TS_CORE_CERT_H

#include <openssl/evp.h>
#include <openssl/x509.h>

/*
 * A certificate for `key`, signed by itself with SHA-256: common name `cn`,
 * valid from a day ago for `days`, with subjectAltName `san` (OpenSSL's
 * syntax, e.g. "DNS:localhost,IP:127.0.0.1") when non-NULL. NULL on failure.
 */
X509 *cert_self_signed(EVP_PKEY *key, const char *cn, int days, const char *san);

#endif
