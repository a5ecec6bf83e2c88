/*
 * bench_srtp: what SRTP costs a call, ours (src/rtc/srtpctx.c, OpenSSL EVP)
 * against libsrtp2 as Debian builds it, which is what srtpctx used before.
 *
 * Heap: the growth of glibc's allocated bytes across creating one call's
 * state (our srtpctx; libsrtp's two sessions keyed as srtpctx keyed them),
 * after one warm-up so that OpenSSL's and NSS's one-time caches are not
 * counted. Time: nanoseconds per packet for a 100-byte RTP payload, protect
 * alone, and unprotect as (protect + unprotect) minus protect. Allocations:
 * OpenSSL's own, per packet, counted through CRYPTO_set_mem_functions.
 *
 *   build/bench_srtp [packets]
 */
#include <malloc.h>
#include <openssl/crypto.h>
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rtc/dtls.h"
#include "rtc/rtp.h"
#include "rtc/srtpctx.h"
#include "../tests/unit/srtp_ref.h"

static unsigned long ossl_allocs; /* the count CRYPTO_set_mem_functions needs a home for */

static void *count_malloc(size_t n, const char *file, int line) {
  ossl_allocs++;
  return malloc(n);
}
static void *count_realloc(void *p, size_t n, const char *file, int line) {
  ossl_allocs++;
  return realloc(p, n);
}
static void count_free(void *p, const char *file, int line) { free(p); }

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/*
 * Live heap bytes. Outside the sanitizers (which own malloc) this build
 * interposes the allocator, so every library's allocations are counted at
 * their usable size; under them, glibc's figure for the main arena is the
 * fallback, which NSS's arena pools blur.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
static size_t heap_used(void) { return mallinfo2().uordblks; }
#else
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
static size_t live_bytes; /* the interposed allocator's tally */

static void *counted(void *p) {
  if (p) live_bytes += malloc_usable_size(p);
  return p;
}
void *malloc(size_t n) { return counted(__libc_malloc(n)); }
void *calloc(size_t k, size_t n) { return counted(__libc_calloc(k, n)); }
void free(void *p) {
  if (p) live_bytes -= malloc_usable_size(p);
  __libc_free(p);
}
void *realloc(void *p, size_t n) {
  if (p) live_bytes -= malloc_usable_size(p);
  return counted(__libc_realloc(p, n));
}
void *memalign(size_t a, size_t n) { return counted(__libc_memalign(a, n)); }
void *aligned_alloc(size_t a, size_t n) { return counted(__libc_memalign(a, n)); }
int posix_memalign(void **out, size_t a, size_t n) {
  *out = counted(__libc_memalign(a, n));
  return *out ? 0 : 12;
}
static size_t heap_used(void) { return live_bytes; }
#endif

static void keying(int profile, uint8_t *km, size_t *len) {
  *len = profile == DTLS_SRTP_AEAD_AES_128_GCM ? 56 : 60;
  for (size_t i = 0; i < *len; i++) km[i] = (uint8_t)(i * 7 + 1);
}

/* ---- libsrtp, keyed as srtpctx keyed it ---- */

struct ref {
  srtp_t in, out;
};

static srtp_t ref_session(int profile, const uint8_t *key, const uint8_t *salt, size_t saltlen,
                          int inbound) {
  srtp_t s = NULL;
  if (srtp_ref_session(&s, profile, key, salt, saltlen, inbound) != srtp_err_status_ok) abort();
  return s;
}

/* is_client 1 on one end and 0 on the other, as srtpctx_new takes it. */
static void *ref_new(int profile, int is_client) {
  uint8_t km[60];
  size_t len;
  keying(profile, km, &len);
  size_t saltlen = (len - 32) / 2;
  const uint8_t *ck = km, *sk = km + 16, *cs = km + 32, *ss = cs + saltlen;
  struct ref *r = malloc(sizeof *r);
  if (!r) abort();
  r->out = ref_session(profile, is_client ? ck : sk, is_client ? cs : ss, saltlen, 0);
  r->in = ref_session(profile, is_client ? sk : ck, is_client ? ss : cs, saltlen, 1);
  return r;
}

static void ref_free(void *v) {
  struct ref *r = v;
  srtp_dealloc(r->in);
  srtp_dealloc(r->out);
  free(r);
}

static void *ours_new(int profile, int is_client) {
  uint8_t km[60];
  size_t len;
  keying(profile, km, &len);
  struct srtpctx *c;
  if (srtpctx_new(&c, profile, km, len, is_client)) abort();
  return c;
}

static void ours_free(void *c) { srtpctx_free(c); }

/* ---- one packet ---- */

static size_t packet(uint8_t *p, uint32_t i) {
  rtp_write_header(p, 0, 111, (uint16_t)i, i * 960u, 0x11223344);
  memset(p + 12, (int)(i & 0xff), 100);
  return 112;
}

static void ours_send(void *tx, void *rx, uint32_t i, int recv) {
  uint8_t p[112 + SRTPCTX_MAX_OVERHEAD];
  size_t n = packet(p, i);
  if (srtpctx_protect_rtp(tx, p, &n, sizeof p)) abort();
  if (recv && srtpctx_unprotect_rtp(rx, p, &n)) abort();
}

static void ref_send(void *tx, void *rx, uint32_t i, int recv) {
  uint8_t p[112 + SRTPCTX_MAX_OVERHEAD];
  int n = (int)packet(p, i);
  if (srtp_protect(((struct ref *)tx)->out, p, &n) != srtp_err_status_ok) abort();
  if (recv && srtp_unprotect(((struct ref *)rx)->in, p, &n) != srtp_err_status_ok) abort();
}

/* ---- measuring one implementation ---- */

struct impl {
  void *(*make)(int profile, int is_client);
  void (*drop)(void *ctx);
  void (*send)(void *tx, void *rx, uint32_t i, int recv);
};

static const struct impl ours = {ours_new, ours_free, ours_send};
static const struct impl libsrtp = {ref_new, ref_free, ref_send};

struct figures {
  size_t heap;           /* bytes per call (both directions) */
  double protect, round; /* ns per packet: protect alone, protect and unprotect */
  double allocs;         /* OpenSSL allocations per packet and direction */
};

/* ns per packet of `count` sends between a fresh pair of contexts. */
static double time_sends(const struct impl *im, int profile, uint32_t count, int recv) {
  void *tx = im->make(profile, 1), *rx = im->make(profile, 0);
  double t0 = now_ns();
  for (uint32_t i = 0; i < count; i++) im->send(tx, rx, i, recv);
  double ns = (now_ns() - t0) / count;
  im->drop(tx);
  im->drop(rx);
  return ns;
}

static struct figures measure(const struct impl *im, int profile, uint32_t count) {
  /* heap: warm up, then the mean over many calls' state */
  enum { CALLS = 64 };
  static void *many[CALLS];
  struct figures f;
  im->drop(im->make(profile, 0));
  size_t h0 = heap_used();
  for (int i = 0; i < CALLS; i++) many[i] = im->make(profile, i & 1);
  f.heap = (heap_used() - h0) / CALLS;
  for (int i = 0; i < CALLS; i++) im->drop(many[i]);
  f.protect = time_sends(im, profile, count, 0);
  unsigned long a0 = ossl_allocs;
  f.round = time_sends(im, profile, count, 1);
  f.allocs = (double)(ossl_allocs - a0) / count / 2;
  return f;
}

static void run(int profile, const char *name, uint32_t count) {
  struct figures o = measure(&ours, profile, count), r = measure(&libsrtp, profile, count);
  printf("%-18s heap/call  ours %6zu B   libsrtp %6zu B\n", name, o.heap, r.heap);
  printf("%-18s protect    ours %6.0f ns  libsrtp %6.0f ns\n", name, o.protect, r.protect);
  printf("%-18s unprotect  ours %6.0f ns  libsrtp %6.0f ns\n", name, o.round - o.protect,
         r.round - r.protect);
  printf("%-18s OpenSSL allocations per packet (ours) %.2f\n", name, o.allocs);
}

int main(int argc, char **argv) {
  CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);
  uint32_t count = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 300000;
  if (srtpctx_global_init() || srtp_init() != srtp_err_status_ok) return 1;
  printf("%u packets of 100 payload bytes each\n", count);
  run(DTLS_SRTP_AES128_CM_SHA1_80, "AES128_CM_SHA1_80", count);
  run(DTLS_SRTP_AEAD_AES_128_GCM, "AEAD_AES_128_GCM", count);
  srtp_shutdown();
  srtpctx_global_shutdown();
  return 0;
}
