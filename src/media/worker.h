/*
 * worker: the media worker threads.
 *
 * Each worker is a thread with its own libuv loop and its own UDP socket
 * (one port per worker). Every packet of a call is handled on the one worker
 * the call was given, so no lock is taken on the per-packet path. The
 * control loop talks to a worker only through its mailbox, and hears back
 * through the control mailbox given at creation.
 */
#ifndef TS_MEDIA_WORKER_H
#define TS_MEDIA_WORKER_H

#include <stdint.h>

#include "core/config.h"
#include "core/mailbox.h"
#include "engines/engines.h"
#include "media/agent.h"
#include "rtc/sdp.h"

struct media_call;
struct media_pool;

/* Events a worker posts to the control loop. */
enum media_event_type {
  MEDIA_EV_CONNECTED = 1, /* ICE selected a path and DTLS finished */
  MEDIA_EV_ENDED,         /* the call is gone from its worker; reason says why */
  MEDIA_EV_RESTARTED,     /* ICE restart applied; ufrag/pwd are the new local credentials */
  MEDIA_EV_AGENT,         /* an event of the call's agent for the page; `json` */
};

/* What a call's media came to, reported with MEDIA_EV_ENDED. */
struct media_call_summary {
  uint64_t packets_received, packets_lost; /* RTP from the caller (RFC 3550 counting) */
  uint64_t late, concealed;                /* jitter buffer: too late to play; made up */
  char recording[64];                      /* file name under data_dir/recordings, or "" */
};

struct media_event {
  struct mailbox_msg hdr; /* hdr.type is an enum media_event_type */
  char call_id[40];
  char reason[64];
  char ufrag[64], pwd[64];
  char *json; /* MEDIA_EV_AGENT: a JSON text (malloc), freed with the event */
  struct media_call_summary summary; /* MEDIA_EV_ENDED */
};

/* Frees an event and what it carries. */
void media_event_free(struct media_event *ev);

/* The parameters of a new call, negotiated by signaling. */
struct media_call_params {
  char call_id[40];
  char remote_ufrag[SDP_ICE_MAX + 1], remote_pwd[SDP_ICE_MAX + 1]; /* as long as RFC 8839 allows */
  char remote_fp_alg[16], remote_fp[SDP_FINGERPRINT_MAX + 1];      /* sha-512 fits */
  int opus_pt;
  uint32_t ssrc; /* ours */
  int ice_timeout_ms;
  struct voice_settings settings; /* for the agent (media/agent.h) */
};

/*
 * Starts cfg->media_workers workers (one per core when 0), each bound to
 * cfg->media_address and port cfg->media_port + i (any free port when
 * media_port is 0). Events go to `control`. Calls are answered by the agent
 * cfg->agent names (agent/agents.h), with `engines` for one that needs them
 * (the voice agent; NULL for the echo agent).
 */
int media_pool_start(struct media_pool **out, const struct config *cfg, struct mailbox *control,
                     struct engines *engines, char *err, size_t errlen);
/* Ends every call, stops and joins the threads, frees everything. */
void media_pool_stop(struct media_pool *pool);

int media_pool_size(const struct media_pool *pool);
/* The worker with the fewest calls. */
int media_pool_pick(const struct media_pool *pool);
/* The UDP port worker i is bound to. */
int media_pool_port(const struct media_pool *pool, int worker);
/* "sha-256" fingerprint of the DTLS certificate every worker uses. */
const char *media_pool_fingerprint(const struct media_pool *pool);
/* Calls on all workers. */
int media_pool_calls(const struct media_pool *pool);

struct prom_buf;
/*
 * Per worker: calls, tick lag, RTP and jitter-buffer counters; the recorder's
 * counters when record_calls is on. Any thread;
 * a call's packet counts arrive within a second (they are handed over once
 * a second and when the call ends).
 */
void media_pool_write_metrics(const struct media_pool *pool, struct prom_buf *b);

/*
 * Creates the call on worker `worker`; local ICE credentials come back in
 * ufrag/pwd (for the answer) right away. The call then runs on its worker;
 * its end is reported by MEDIA_EV_ENDED.
 */
int media_pool_add_call(struct media_pool *pool, int worker, const struct media_call_params *p,
                        char *ufrag, size_t ufrag_cap, char *pwd, size_t pwd_cap);
/* Ends a call; MEDIA_EV_ENDED follows with `reason`. */
void media_pool_end_call(struct media_pool *pool, int worker, const char *call_id,
                         const char *reason);
/* ICE restart with the peer's new credentials; MEDIA_EV_RESTARTED follows. */
void media_pool_restart_ice(struct media_pool *pool, int worker, const char *call_id,
                            const char *remote_ufrag, const char *remote_pwd);

#endif
