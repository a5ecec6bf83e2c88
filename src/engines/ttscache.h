/*
 * ttscache: synthesised speech kept so that a phrase said before is said
 * again at once, and paid for once.
 *
 * A phrase is known by its key: backend, model, voice, rate, language and
 * its text with the whitespace normalised (trimmed, runs collapsed to one
 * space; case and punctuation are kept, they change the prosody). Two tiers
 * hold finished audio: memory (LRU, bounded in bytes) and files in a
 * directory (bounded in bytes, oldest use evicted, kept across restarts).
 *
 * A request is served as a job like any backend's (engines/job.h): a hit
 * posts the whole phrase home at once; a miss starts one synthesis on the
 * control loop, which streams to every request for that key while it runs
 * (single flight). Files are read and written on the inference pool, never
 * on the requester's thread. docs/engines.md ("TTS cache") tells the rest.
 */
#ifndef TS_ENGINES_TTSCACHE_H
#define TS_ENGINES_TTSCACHE_H

#include <stddef.h>

#include "engines/tts.h"

struct ttscache;
struct pool;
struct prom_buf;

struct ttscache_opts {
  size_t mem_bytes;        /* bound of the memory tier; 0 = none */
  size_t disk_bytes;       /* bound of the disk tier; 0 = none */
  const char *dir;         /* the disk tier's directory, made if missing; "" = none */
  struct pool *pool;       /* where files are read and written; NULL = no disk tier */
  struct mailbox *control; /* the loop syntheses run on; required */
};

/* What makes the audio: the backend and its engine, and the settings in effect. */
struct ttscache_src {
  const struct tts_backend *be;
  void *engine;
  const char *model; /* "" when the backend takes none */
  const char *voice; /* the request's voice, else the configured one */
  int rate;          /* the request's rate, else the configured one */
};

/* How a request was served. */
enum ttscache_how {
  TTSCACHE_MISS,       /* a synthesis was started for it */
  TTSCACHE_JOINED,     /* it shares a synthesis (or a file read) already under way */
  TTSCACHE_HIT_MEMORY, /* finished audio, posted at once */
  TTSCACHE_HIT_DISK    /* a file is read for it on the pool */
};

/*
 * Makes a cache. With no usable directory or pool the disk tier is off
 * (logged); files left half-written by a crash are deleted, and the tier is
 * trimmed to its bound. Returns 0, -EINVAL (no control loop) or -ENOMEM.
 */
int ttscache_new(struct ttscache **out, const struct ttscache_opts *o, char *err, size_t errlen);

/*
 * The control loop's thread, before the backends close: stops syntheses in
 * flight and lets go of the cache; what is still queued (a file write, a
 * closure) finishes or is dropped without touching a backend.
 */
void ttscache_free(struct ttscache *c);

/*
 * Any thread, as a backend's speak: a job whose callbacks run on `home`.
 * Returns 0, -ENOTSUP when the text is blank (speak it uncached), or a
 * negative errno. *how says how it is served.
 */
int ttscache_speak(struct ttscache *c, const struct ttscache_src *src, const struct tts_params *p,
                   struct mailbox *home, const struct tts_cb *cb, struct tts_job **out,
                   enum ttscache_how *how);

/*
 * Any thread: puts the phrase in the memory tier if it is not there, and
 * lets a synthesis of it run to its end even when every listener leaves.
 * *how: MISS a synthesis started, HIT_DISK a file is read, HIT_MEMORY or
 * JOINED nothing new was needed. Returns 0, -ENOTSUP (blank) or an errno.
 */
int ttscache_warm(struct ttscache *c, const struct ttscache_src *src, const struct tts_params *p,
                  enum ttscache_how *how);

/* Hits, misses, joins, evictions, bytes and entries by tier; any thread. */
void ttscache_write_metrics(struct ttscache *c, struct prom_buf *b);

#endif
