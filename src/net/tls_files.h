/* tls_files: the certificate and key the HTTPS listener uses. */
#ifndef TS_NET_TLS_FILES_H
#define TS_NET_TLS_FILES_H

#include <stddef.h>

#include "core/config.h"

/*
 * Puts the paths of the PEM certificate and key to use into cert/key: the
 * configured ones if set (both must be readable), otherwise
 * <data_dir>/tls/{cert,key}.pem, generated self-signed on first use.
 */
int tls_files_ensure(const struct config *cfg, char *cert, size_t certcap, char *key,
                     size_t keycap, char *err, size_t errlen);

/* Writes a new self-signed ECDSA P-256 certificate for `host_names` (comma separated). */
int tls_files_generate(const char *cert_path, const char *key_path, const char *host_names,
                       char *err, size_t errlen);

#endif
