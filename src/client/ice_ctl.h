/*
 * ice_ctl: the controlling side of ICE for a client (RFC 8445), no sockets.
 *
 * The client knows the server's candidates from its answer. It sends
 * Binding requests to each (USERNAME, PRIORITY, ICE-CONTROLLING,
 * USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT), retransmitting until one
 * succeeds; the first candidate whose check succeeds is the path. After
 * that it keeps sending consent checks (RFC 7675). It also answers the
 * checks a full agent sends to it (Janus does; an ICE-lite server does not).
 */
#ifndef TS_CLIENT_ICE_CTL_H
#define TS_CLIENT_ICE_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ICECTL_MAX_CANDIDATES 8

struct icectl;

struct icectl *icectl_new(uint64_t now_ms);
void icectl_free(struct icectl *a);

const char *icectl_local_ufrag(const struct icectl *a);
const char *icectl_local_pwd(const struct icectl *a);

/* The peer's credentials and candidates, from its answer. */
void icectl_set_remote(struct icectl *a, const char *ufrag, const char *pwd);
/* -ENOSPC beyond ICECTL_MAX_CANDIDATES. */
int icectl_add_candidate(struct icectl *a, const struct sockaddr *addr);

/*
 * The next check due at `now_ms`: returns its length and fills `to`, or 0
 * when nothing is due. Call until it returns 0.
 */
int icectl_poll(struct icectl *a, uint64_t now_ms, uint8_t *out, size_t cap,
                struct sockaddr_storage *to);

enum icectl_result {
  ICECTL_DROP = 0,      /* nothing to send */
  ICECTL_RESPOND = 1,   /* send out[0..*out_len) back to `from` */
  ICECTL_SELECTED = 2,  /* flag: a path was selected by this packet */
};

/* A STUN packet from `from`: a response to one of our checks, or the peer's check. */
int icectl_handle(struct icectl *a, const uint8_t *pkt, size_t len, const struct sockaddr *from,
                  uint64_t now_ms, uint8_t *out, size_t cap, size_t *out_len);

/* The selected path, or NULL. */
const struct sockaddr *icectl_selected(const struct icectl *a);
/* 1 when no check succeeded within `timeout_ms` of the start, or consent was lost. */
int icectl_failed(const struct icectl *a, uint64_t now_ms, int timeout_ms);

#endif
