/*
 * Call recorder.
 *
 * A media worker must never wait for a disk, so a recording is split in
 * two halves that share one struct recorder_call and never the same
 * fields. The worker's half appends each tick's two packets to a buffer
 * (a copy of a few hundred bytes) and, once the buffer holds a second of
 * ticks or is full, posts it to the recorder thread's mailbox. The
 * thread's half pairs the packets into two-stream Opus packets and writes
 * them as Ogg pages, one flush per buffer, so a crash leaves a file that
 * plays up to the last second or so. The struct belongs to the worker until
 * recorder_call_end posts the call's end, and to the thread after.
 *
 * The queue is a mailbox (its lock is held for two pointer writes, once a
 * second per call, never per packet) bounded by bytes. When the thread
 * falls behind (a slow or stalled disk) a worker drops whole buffers
 * rather than wait or grow without limit; each buffer carries the number
 * of its first tick, so the thread fills what was dropped as a gap on both
 * sides (below) and the rest of the file stays in time. A call's end is
 * never dropped: it carries no audio, and the thread needs it to finish
 * the file and free the call.
 *
 * A side without a packet for a tick is concealed by the player, as the
 * live receiver concealed it; after CONCEAL_TICKS (200 ms, when the
 * jitter buffer too considers the stream paused) it gets coded silence,
 * since concealment would leave a faint noise for as long as the gap lasts.
 *
 * The thread holds back each call's newest packet until the next one or
 * the end arrives, so that the last packet of a finished file carries the
 * end-of-stream flag.
 */
#include "media/recorder.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "audio/oggopus.h"
#include "core/log.h"
#include "core/mailbox.h"
#include "core/prom.h"

#define BUFFER_TICKS 50             /* one second per buffer */
#define BUFFER_BYTES (16 * 1024)    /* typical second: 50 * (4 + ~80 + ~80) bytes */
#define QUEUE_BYTES (32u << 20)     /* by default: 2,000 buffers, ten seconds of 200 calls */
#define TICK_HEADER 4               /* two 16-bit lengths before each tick's packets */
#define CONCEAL_TICKS 10            /* a side's gap is concealed this long, then silent */

enum { MSG_BUFFER = 1, MSG_END, MSG_STOP };

struct buffer {
  struct mailbox_msg hdr; /* MSG_BUFFER */
  struct recorder_call *call;
  uint64_t first_tick;
  int ticks;
  size_t len;
  uint8_t data[BUFFER_BYTES];
};

struct recorder_call {
  struct recorder *rec;
  char id[40];
  uint64_t wall_ms;
  struct mailbox_msg end; /* MSG_END, posted by recorder_call_end */
  /* The worker's half. */
  struct buffer *cur;
  uint64_t ticks; /* ticks recorded so far; final once `end` is posted */
  /* The thread's half. */
  int fd, failed;
  struct oggopus_writer *writer;
  uint64_t written;                  /* ticks added to the file, counting the held-back one */
  uint8_t held[OGGOPUS_MAX_PAIR];    /* the newest packet, not yet added */
  size_t held_len;
  uint64_t bad_caller, bad_agent;    /* packets replaced: malformed or not 20 ms */
  int gap_caller, gap_agent;         /* ticks in a row without a packet, per side */
};

struct recorder {
  uv_thread_t thread;
  uv_loop_t loop;
  struct mailbox *mb;
  struct mailbox_msg stop; /* MSG_STOP, posted by recorder_stop */
  char dir[1100];
  size_t queue_max;
  int loop_ready, started;
  atomic_ullong queued, files, failed, dropped;
  atomic_int warned;
};

/* --- the thread's half --------------------------------------------------------- */

static int open_file(struct recorder_call *rc) {
  char name[64], path[1200], date[40] = "DATE=", title[80];
  if (recorder_file_name(rc->id, name, sizeof name) ||
      snprintf(path, sizeof path, "%s/%s", rc->rec->dir, name) >= (int)sizeof path)
    return -ENAMETOOLONG;
  rc->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (rc->fd < 0) return -errno;
  time_t t = (time_t)(rc->wall_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(date + 5, sizeof date - 5, "%Y-%m-%dT%H:%M:%SZ", &tm);
  snprintf(title, sizeof title, "TITLE=call %s", rc->id);
  const char *tags[] = {title, date, "TINGSHUO_CHANNELS=caller,agent"};
  uint32_t serial = 2166136261u; /* any number will do: the file holds one stream */
  for (const char *p = rc->id; *p; p++) serial = (serial ^ (uint8_t)*p) * 16777619u;
  return oggopus_writer_new(&rc->writer, rc->fd, serial, "tingshuo", tags, 3);
}

static void give_up(struct recorder_call *rc, const char *what, int rc_errno) {
  if (rc->failed) return;
  rc->failed = 1;
  atomic_fetch_add(&rc->rec->failed, 1);
  log_call_error("recorder", rc->id, "recording stopped: cannot %s %s/%s.ogg: %s", what,
            rc->rec->dir, rc->id, strerror(-rc_errno));
}

/* Adds the held-back packet to the file and holds `pkt` back instead. */
static void add_packet(struct recorder_call *rc, const uint8_t *pkt, size_t len) {
  if (rc->held_len) {
    int err = oggopus_writer_add(rc->writer, rc->held, rc->held_len, 0);
    if (err) give_up(rc, "write", err);
  }
  memcpy(rc->held, pkt, len);
  rc->held_len = len;
  rc->written++;
}

/* A side's packet for this tick: its own, nothing (concealed) early in a
 * gap, or silence once the gap is long. A packet the pair cannot carry
 * (malformed, or not 20 ms long) counts as none. */
static const uint8_t *side(const uint8_t *pkt, size_t *len, int *gap, uint64_t *bad) {
  if (*len && !oggopus_usable(pkt, *len)) {
    ++*bad;
    *len = 0;
  }
  if (*len) {
    *gap = 0;
    return pkt;
  }
  if (++*gap <= CONCEAL_TICKS) return NULL;
  return oggopus_silence(len);
}

static void add_tick(struct recorder_call *rc, const uint8_t *caller, size_t cl,
                     const uint8_t *agent, size_t al) {
  uint8_t pkt[OGGOPUS_MAX_PAIR];
  caller = side(caller, &cl, &rc->gap_caller, &rc->bad_caller);
  agent = side(agent, &al, &rc->gap_agent, &rc->bad_agent);
  int n = oggopus_pair(caller, cl, agent, al, pkt, sizeof pkt, NULL);
  if (n < 0) n = oggopus_pair(NULL, 0, NULL, 0, pkt, sizeof pkt, NULL); /* cannot happen */
  add_packet(rc, pkt, (size_t)n);
}

/* Ticks whose buffer was dropped: gaps on both sides. */
static void fill_to(struct recorder_call *rc, uint64_t tick) {
  while (rc->written < tick && !rc->failed) add_tick(rc, NULL, 0, NULL, 0);
}

static int ensure_open(struct recorder_call *rc) {
  if (rc->failed) return -1;
  if (rc->writer) return 0;
  int err = open_file(rc);
  if (err) give_up(rc, "create", err);
  return err;
}

static void write_buffer(struct recorder_call *rc, const struct buffer *b) {
  fill_to(rc, b->first_tick);
  size_t o = 0;
  for (int i = 0; i < b->ticks && !rc->failed; i++) {
    uint16_t cl, al;
    memcpy(&cl, b->data + o, 2);
    memcpy(&al, b->data + o + 2, 2);
    const uint8_t *caller = b->data + o + TICK_HEADER;
    add_tick(rc, caller, cl, caller + cl, al);
    o += TICK_HEADER + cl + al;
  }
  int err = rc->failed ? 0 : oggopus_writer_flush(rc->writer);
  if (err) give_up(rc, "write", err);
}

static void finish(struct recorder_call *rc) {
  if (ensure_open(rc) == 0) {
    fill_to(rc, rc->ticks);
    int err = rc->held_len ? oggopus_writer_add(rc->writer, rc->held, rc->held_len, 1) : 0;
    if (err == 0) err = oggopus_writer_flush(rc->writer);
    if (err) give_up(rc, "write", err);
  }
  oggopus_writer_free(rc->writer);
  if (rc->fd >= 0 && close(rc->fd) != 0) give_up(rc, "close", -errno);
  if (!rc->failed) atomic_fetch_add(&rc->rec->files, 1);
  if (rc->bad_caller || rc->bad_agent)
    log_call_info("recorder", rc->id, "%llu caller and %llu agent packets were not 20 ms Opus "
             "packets and were left out of the recording",
             (unsigned long long)rc->bad_caller, (unsigned long long)rc->bad_agent);
  free(rc);
}

/* Every message, whether the mailbox delivers it or, closing, hands it back. */
static void handle(struct mailbox_msg *m) {
  if (m->type == MSG_BUFFER) {
    struct buffer *b = (struct buffer *)m;
    struct recorder *r = b->call->rec;
    if (ensure_open(b->call) == 0) write_buffer(b->call, b);
    atomic_fetch_sub(&r->queued, sizeof *b);
    free(b);
  } else if (m->type == MSG_END) {
    finish((struct recorder_call *)((char *)m - offsetof(struct recorder_call, end)));
  } /* MSG_STOP is part of the recorder */
}

static void on_message(struct mailbox *mb, struct mailbox_msg *m, void *user) {
  int stop = m->type == MSG_STOP;
  handle(m);
  if (stop) mailbox_close(mb, handle); /* posted after every worker stopped: nothing follows */
}

static void run(void *arg) {
  struct recorder *r = arg;
  pthread_setname_np(pthread_self(), "ts-recorder"); /* for top -H and bench/recording.sh */
  uv_run(&r->loop, UV_RUN_DEFAULT);
}

/* --- start and stop ------------------------------------------------------------------- */

static int make_dir(struct recorder *r, const char *data_dir, char *err, size_t errlen) {
  if (snprintf(r->dir, sizeof r->dir, "%s/recordings", data_dir) >= (int)sizeof r->dir) {
    snprintf(err, errlen, "data_dir is too long for recordings");
    return -ENAMETOOLONG;
  }
  struct stat st;
  if (mkdir(r->dir, 0700) != 0 && errno != EEXIST) {
    int e = errno;
    snprintf(err, errlen, "cannot create %s: %s", r->dir, strerror(e));
    return -e;
  }
  if (stat(r->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s is not a directory", r->dir);
    return -ENOTDIR;
  }
  return 0;
}

int recorder_start(struct recorder **out, const char *data_dir, size_t queue_bytes, char *err,
                   size_t errlen) {
  if (errlen) err[0] = 0;
  struct recorder *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  r->queue_max = queue_bytes ? queue_bytes : QUEUE_BYTES;
  int rc = make_dir(r, data_dir, err, errlen);
  if (rc == 0 && (rc = uv_loop_init(&r->loop)) == 0) r->loop_ready = 1;
  if (rc == 0) rc = mailbox_new(&r->mb, &r->loop, on_message, r);
  if (rc == 0) rc = uv_thread_create(&r->thread, run, r);
  if (rc == 0) r->started = 1;
  if (rc) {
    if (!err[0]) snprintf(err, errlen, "cannot start the recorder: %s", uv_strerror(rc));
    recorder_stop(r);
    return rc;
  }
  *out = r;
  return 0;
}

void recorder_stop(struct recorder *r) {
  if (!r) return;
  if (r->started) {
    r->stop.type = MSG_STOP;
    mailbox_post(r->mb, &r->stop);
    uv_thread_join(&r->thread);
  } else if (r->mb) {
    mailbox_close(r->mb, handle);
  }
  if (r->loop_ready) {
    uv_run(&r->loop, UV_RUN_DEFAULT); /* a mailbox that never ran still closes its handle */
    uv_loop_close(&r->loop);
  }
  uint64_t dropped = atomic_load(&r->dropped);
  if (dropped) log_warn("recorder", "%llu buffers of recorded audio were dropped",
                        (unsigned long long)dropped);
  free(r);
}

/* --- the worker's half ------------------------------------------------------------------ */

int recorder_file_name(const char *call_id, char *out, size_t cap) {
  size_t n = strlen(call_id);
  if (n == 0 || n > 36) return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    char ch = call_id[i];
    int ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             ch == '-' || ch == '_';
    if (!ok) return -EINVAL;
  }
  return snprintf(out, cap, "%s.ogg", call_id) >= (int)cap ? -ENOSPC : 0;
}

struct recorder_call *recorder_call_new(struct recorder *r, const char *call_id,
                                        uint64_t wall_ms) {
  char name[64];
  if (recorder_file_name(call_id, name, sizeof name)) return NULL;
  struct recorder_call *rc = calloc(1, sizeof *rc);
  if (!rc) return NULL;
  rc->rec = r;
  snprintf(rc->id, sizeof rc->id, "%s", call_id);
  rc->wall_ms = wall_ms;
  rc->fd = -1;
  rc->end.type = MSG_END;
  return rc;
}

static void post_buffer(struct recorder_call *rc) {
  struct recorder *r = rc->rec;
  struct buffer *b = rc->cur;
  rc->cur = NULL;
  if (atomic_load(&r->queued) + sizeof *b > r->queue_max) {
    atomic_fetch_add(&r->dropped, 1);
    if (!atomic_exchange(&r->warned, 1))
      log_call_warn("recorder", rc->id, "the recorder is behind; dropping recorded audio (counted)");
    free(b);
    return;
  }
  atomic_fetch_add(&r->queued, sizeof *b);
  mailbox_post(r->mb, &b->hdr);
}

void recorder_call_tick(struct recorder_call *rc, const uint8_t *caller, size_t caller_len,
                        const uint8_t *agent, size_t agent_len) {
  /* Longer than any 20 ms packet: recorded as no packet. */
  if (!caller || caller_len > OGGOPUS_MAX_SIDE) caller_len = 0;
  if (!agent || agent_len > OGGOPUS_MAX_SIDE) agent_len = 0;
  size_t need = TICK_HEADER + caller_len + agent_len;
  struct buffer *b = rc->cur;
  if (b && (b->ticks == BUFFER_TICKS || sizeof b->data - b->len < need)) post_buffer(rc);
  if (!rc->cur && (rc->cur = malloc(sizeof *rc->cur))) {
    rc->cur->hdr = (struct mailbox_msg){.type = MSG_BUFFER};
    rc->cur->call = rc;
    rc->cur->first_tick = rc->ticks;
    rc->cur->ticks = 0;
    rc->cur->len = 0;
  }
  rc->ticks++; /* without a buffer the tick is lost, and silent in the file */
  if (!(b = rc->cur)) return;
  uint16_t cl = (uint16_t)caller_len, al = (uint16_t)agent_len;
  uint8_t *p = b->data + b->len;
  memcpy(p, &cl, 2);
  memcpy(p + 2, &al, 2);
  if (cl) memcpy(p + TICK_HEADER, caller, cl);
  if (al) memcpy(p + TICK_HEADER + cl, agent, al);
  b->len += need;
  b->ticks++;
}

void recorder_call_end(struct recorder_call *rc) {
  if (!rc) return;
  if (rc->cur) post_buffer(rc);
  mailbox_post(rc->rec->mb, &rc->end);
}

void recorder_get_stats(const struct recorder *r, struct recorder_stats *st) {
  st->files = atomic_load(&r->files);
  st->failed = atomic_load(&r->failed);
  st->dropped = atomic_load(&r->dropped);
  st->queued = atomic_load(&r->queued);
}

void recorder_write_metrics(const struct recorder *r, struct prom_buf *b) {
  struct recorder_stats st;
  recorder_get_stats(r, &st);
  prom_family(b, "tingshuo_recordings_total", "counter", "Call recordings finished.");
  prom_sample(b, "tingshuo_recordings_total", (double)st.files, NULL);
  prom_family(b, "tingshuo_recordings_failed_total", "counter",
              "Call recordings given up because their file could not be created or written.");
  prom_sample(b, "tingshuo_recordings_failed_total", (double)st.failed, NULL);
  prom_family(b, "tingshuo_recording_buffers_dropped_total", "counter",
              "About one second of one call's recording dropped because the recorder fell behind.");
  prom_sample(b, "tingshuo_recording_buffers_dropped_total", (double)st.dropped, NULL);
  prom_family(b, "tingshuo_recording_queue_bytes", "gauge",
              "Recorded audio waiting for the recorder thread.");
  prom_sample(b, "tingshuo_recording_queue_bytes", (double)st.queued, NULL);
}
