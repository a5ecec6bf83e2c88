/*
 * dtls: DTLS 1.2 for DTLS-SRTP (RFC 5763, 5764), on OpenSSL, no sockets.
 *
 * Datagrams go in through dtls_session_handle and come out through the
 * session's send callback, one call per datagram. The caller drives the
 * retransmission timer from its own loop.
 */
#ifndef TS_RTC_DTLS_H
#define TS_RTC_DTLS_H

#include <stddef.h>
#include <stdint.h>

enum dtls_role { DTLS_ROLE_SERVER, DTLS_ROLE_CLIENT };
enum dtls_state { DTLS_HANDSHAKING, DTLS_CONNECTED, DTLS_FAILED, DTLS_CLOSED };

#define DTLS_MTU 1200
#define DTLS_SRTP_AES128_CM_SHA1_80 0x0001
#define DTLS_SRTP_AEAD_AES_128_GCM 0x0007
#define DTLS_MAX_KEYING 60

/* A key pair and self-signed certificate (ECDSA P-256), shared by many sessions. */
struct dtls_cert;
int dtls_cert_new(struct dtls_cert **out);
/* "AB:CD:..." SHA-256 of the certificate, as SDP's a=fingerprint:sha-256 wants. */
const char *dtls_cert_fingerprint(const struct dtls_cert *cert);
void dtls_cert_free(struct dtls_cert *cert);

/*
 * Settings shared by the sessions of one role; `profiles` is OpenSSL's
 * use_srtp list (NULL: AEAD_AES_128_GCM preferred, then AES128_CM_SHA1_80).
 * Owned by one thread: only that thread makes OpenSSL objects from it (see
 * dtls_session_new). The certificate must outlive it.
 */
struct dtls_ctx;
int dtls_ctx_new(struct dtls_ctx **out, struct dtls_cert *cert, enum dtls_role role);
int dtls_ctx_new_profiles(struct dtls_ctx **out, struct dtls_cert *cert, enum dtls_role role,
                          const char *profiles);
void dtls_ctx_free(struct dtls_ctx *ctx);

typedef void (*dtls_send_fn)(void *user, const uint8_t *data, size_t len);

struct dtls_session;
/*
 * `fp_alg`/`fp`: the peer's certificate fingerprint from its SDP
 * ("sha-256", "AB:CD:..."); the handshake fails when it does not match.
 * Any thread may create a session (a media call is made on the control
 * thread): it holds no OpenSSL object until its first use
 * (dtls_session_start or _handle), which must be on the thread that owns
 * `ctx`, as every later use of the session is.
 */
struct dtls_session *dtls_session_new(struct dtls_ctx *ctx, const char *fp_alg, const char *fp,
                                      dtls_send_fn send, void *user);
void dtls_session_free(struct dtls_session *s);
/* Sets where datagrams go (the send callback may change when a call moves threads). */
void dtls_session_set_send(struct dtls_session *s, dtls_send_fn send, void *user);

/* Client role: sends the ClientHello. */
enum dtls_state dtls_session_start(struct dtls_session *s);
/* Feeds one received datagram; returns the state after it. */
enum dtls_state dtls_session_handle(struct dtls_session *s, const uint8_t *data, size_t len);
enum dtls_state dtls_session_state(const struct dtls_session *s);
/* Why the session failed or closed. */
const char *dtls_session_error(const struct dtls_session *s);

/* Milliseconds until a retransmission is due, or -1 when none is pending. */
long dtls_session_timeout_ms(struct dtls_session *s);
/* Call when that time has come. */
void dtls_session_on_timer(struct dtls_session *s);

/* After DTLS_CONNECTED: the SRTP profile and RFC 5764 4.2 keying material
 * (-EAGAIN before, -ENOENT once the session is released). */
int dtls_session_srtp_keys(struct dtls_session *s, int *profile, uint8_t *material, size_t *len);

/*
 * Frees a connected session's OpenSSL object, some 60 KB that OpenSSL keeps
 * for the rest of a connection (the handshake's buffer, for retransmission,
 * and a read and a write record buffer), when DTLS has nothing left to do:
 * WebRTC uses it for the SRTP keys alone. The session stays DTLS_CONNECTED
 * and every later datagram is ignored, so neither a retransmitted final
 * flight is answered nor a close_notify noticed any more. Release only
 * once the keys are taken and the peer has shown it finished its handshake
 * (SRTP from it authenticated). A no-op in any other state.
 */
void dtls_session_release(struct dtls_session *s);
enum dtls_role dtls_session_role(const struct dtls_session *s);

/*
 * The certificate's fingerprint with another hash RFC 8122 names (sha-1,
 * sha-224, sha-256, sha-384, sha-512), as a peer would put it in its SDP:
 * 0, -EINVAL (a hash we do not check), -ENOSPC (out has room for less
 * than 3 characters per digest byte) or -EIO.
 */
int dtls_cert_fingerprint_as(const struct dtls_cert *cert, const char *alg, char *out, size_t cap);

#endif
