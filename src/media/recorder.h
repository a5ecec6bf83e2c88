/*
 * recorder: call recordings, written off the media workers.
 *
 * A media pool with record_calls on has one recorder: a thread that owns
 * every recording file. A call's worker hands it, each 20 ms tick, the
 * caller's Opus packet it played and the AI's packet it sent; they are
 * copied into a buffer that goes to the thread about once a second, and the
 * thread writes them as a stereo Ogg Opus file (src/audio/oggopus.h),
 * data_dir/recordings/<call id>.ogg: left the caller, right the AI.
 * Nothing is decoded or encoded. docs/recording.md describes the file.
 */
#ifndef TS_MEDIA_RECORDER_H
#define TS_MEDIA_RECORDER_H

#include <stddef.h>
#include <stdint.h>

struct recorder;
struct recorder_call;

/* Creates data_dir/recordings (mode 0700) when missing and starts the
 * thread. `queue_bytes` bounds the audio waiting for the thread (0: 32 MB,
 * ten seconds of 200 calls); beyond it, workers drop what they record.
 * Returns 0 or a negative errno with a message in err. */
int recorder_start(struct recorder **out, const char *data_dir, size_t queue_bytes, char *err,
                   size_t errlen);

/* Writes what is queued, finishes every file, joins the thread and frees.
 * Every call's recorder_call_end must have been called before. */
void recorder_stop(struct recorder *r);

/* "<call id>.ogg" into out; -EINVAL when the id is not a safe file name
 * (letters, digits, '-' and '_', 1 to 36 characters), -ENOSPC. */
int recorder_file_name(const char *call_id, char *out, size_t cap);

/*
 * A call's recording, on its worker's thread. NULL when the id is not a
 * safe file name or memory is short. `wall_ms` (Unix time in ms) is when
 * its first tick was heard, for the file's DATE tag.
 */
struct recorder_call *recorder_call_new(struct recorder *r, const char *call_id, uint64_t wall_ms);

/* One 20 ms tick: the caller's packet played this tick and the AI's packet
 * sent this tick, either NULL (len 0) when there was none. Copies them. */
void recorder_call_tick(struct recorder_call *rc, const uint8_t *caller, size_t caller_len,
                        const uint8_t *agent, size_t agent_len);

/* The call ended: its last ticks go to the thread, which finishes the file
 * and frees rc. rc must not be used after. */
void recorder_call_end(struct recorder_call *rc);

struct recorder_stats {
  uint64_t files;     /* recordings finished */
  uint64_t failed;    /* recordings given up: the file could not be created or written */
  uint64_t dropped;   /* buffers (about 1 s of one call) dropped because the thread fell behind */
  uint64_t queued;    /* bytes waiting for the thread now */
};
/* Any thread. */
void recorder_get_stats(const struct recorder *r, struct recorder_stats *st);

struct prom_buf;
/* The counters above as tingshuo_recordings_* metrics. Any thread. */
void recorder_write_metrics(const struct recorder *r, struct prom_buf *b);

#endif
