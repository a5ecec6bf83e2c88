/*
 * Certificates for the HTTPS listener.
 *
 * Browsers give a page the microphone only in a secure context: https://, or
 * http://localhost. A server reached by its LAN or public address therefore
 * needs HTTPS. Operators with a real certificate configure tls_cert/tls_key;
 * everybody else gets a self-signed ECDSA P-256 certificate generated once
 * into data_dir/tls/ and reused on later starts (so the browser exception a
 * user accepts keeps working). Its subjectAltName lists localhost, the
 * loopback addresses and the machine's host name.
 */
#include "net/tls_files.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cert.h"
#include "core/log.h"

static int readable(const char *path) { return access(path, R_OK) == 0; }

static int mkdir_p(const char *dir) {
  char tmp[1100];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0755) && errno != EEXIST) return -errno;
    *p = '/';
  }
  if (mkdir(tmp, 0700) && errno != EEXIST) return -errno;
  return 0;
}

static int write_pem(const char *path, int mode, X509 *x, EVP_PKEY *pkey) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return -errno;
  FILE *f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    return -errno;
  }
  int ok = x ? PEM_write_X509(f, x) : PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL);
  return fclose(f) == 0 && ok ? 0 : -EIO;
}

int tls_files_generate(const char *cert_path, const char *key_path, const char *host_names,
                       char *err, size_t errlen) {
  EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  X509 *x = pkey ? cert_self_signed(pkey, "tingshuo self-signed", 365, host_names) : NULL;
  int rc = x ? 0 : -EIO;
  if (rc == 0) rc = write_pem(key_path, 0600, NULL, pkey);
  if (rc == 0) rc = write_pem(cert_path, 0644, x, NULL);
  if (rc) snprintf(err, errlen, "cannot create a self-signed certificate in %s: %s", cert_path,
                   rc == -EIO ? "OpenSSL failed" : strerror(-rc));
  X509_free(x);
  EVP_PKEY_free(pkey);
  return rc;
}

int tls_files_ensure(const struct config *cfg, char *cert, size_t certcap, char *key,
                     size_t keycap, char *err, size_t errlen) {
  if (cfg->tls_cert[0] || cfg->tls_key[0]) {
    const char *bad = !readable(cfg->tls_cert) ? cfg->tls_cert
                      : !readable(cfg->tls_key) ? cfg->tls_key : NULL;
    if (bad) {
      snprintf(err, errlen, "tls_cert and tls_key must both name readable PEM files; "
                            "cannot read \"%s\"", bad);
      return -ENOENT;
    }
    snprintf(cert, certcap, "%s", cfg->tls_cert);
    snprintf(key, keycap, "%s", cfg->tls_key);
    return 0;
  }
  char dir[1100];
  snprintf(dir, sizeof dir, "%s/tls", cfg->data_dir);
  snprintf(cert, certcap, "%s/cert.pem", dir);
  snprintf(key, keycap, "%s/key.pem", dir);
  if (readable(cert) && readable(key)) return 0;
  int rc = mkdir_p(dir);
  if (rc) {
    snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
    return rc;
  }
  char host[256] = "localhost", names[700];
  gethostname(host, sizeof host - 1);
  snprintf(names, sizeof names, "DNS:localhost,IP:127.0.0.1,IP:::1%s%s",
           strcmp(host, "localhost") ? ",DNS:" : "", strcmp(host, "localhost") ? host : "");
  rc = tls_files_generate(cert, key, names, err, errlen);
  if (rc == 0) log_info("tls", "generated a self-signed certificate: %s", cert);
  return rc;
}
