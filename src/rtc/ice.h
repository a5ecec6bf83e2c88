/*
 * ice: the ICE-lite side of one call (RFC 8445 lite, RFC 7675 consent).
 *
 * Pure logic: it is given each STUN packet with its source and the time,
 * and says what to send back and whether the path changed.
 */
#ifndef TS_RTC_ICE_H
#define TS_RTC_ICE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ice_agent;

enum ice_result {
  ICE_DROP = 0,       /* nothing to send */
  ICE_RESPOND = 1,    /* send `out` back to the source */
  ICE_AUTHENTICATED = 2, /* flag: the check was authenticated */
  ICE_SELECTED = 4,   /* flag: the source is now the selected path */
};

struct ice_agent *ice_agent_new(uint64_t now_ms, int timeout_ms);
void ice_agent_free(struct ice_agent *a);

const char *ice_local_ufrag(const struct ice_agent *a);
const char *ice_local_pwd(const struct ice_agent *a);
void ice_set_remote(struct ice_agent *a, const char *ufrag, const char *pwd);

/* New local credentials (ICE restart); the selected path stays until a check under them. */
void ice_restart(struct ice_agent *a, const char *remote_ufrag, const char *remote_pwd,
                 uint64_t now_ms);

/*
 * Handles one STUN packet. Returns ICE_DROP, or ICE_RESPOND with flags; on
 * ICE_RESPOND the response is in out[0..*out_len).
 */
int ice_handle(struct ice_agent *a, const uint8_t *pkt, size_t len, const struct sockaddr *from,
               uint64_t now_ms, uint8_t *out, size_t cap, size_t *out_len);

/* The selected path, or NULL before nomination. */
const struct sockaddr *ice_selected(const struct ice_agent *a);
/* 1 when no authenticated check arrived for the timeout (the peer is gone). */
int ice_expired(const struct ice_agent *a, uint64_t now_ms);

/* Fills `out` with `n` random characters from the ice-char set (RFC 8839). */
void ice_random_chars(char *out, size_t n);

#endif
