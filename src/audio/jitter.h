/*
 * jitter: an adaptive jitter buffer for one Opus stream, for a loop that
 * takes one 20 ms frame every 20 ms.
 */
#ifndef TS_AUDIO_JITTER_H
#define TS_AUDIO_JITTER_H

#include <stddef.h>
#include <stdint.h>

#include "audio/opus_codec.h"

struct jitter;

struct jitter_stats {
  uint64_t received, played, concealed, recovered, late, duplicate, dropped;
  int target_ms, depth_ms;
};

struct jitter *jitter_new(void);
/* Decoding to `rate` (see opusc_dec_new_rate); jitter_get then gives rate / 50 samples. */
struct jitter *jitter_new_rate(int rate);
void jitter_free(struct jitter *jb);

/* Stores a copy of one packet's payload. */
void jitter_put(struct jitter *jb, uint16_t seq, const uint8_t *payload, size_t len,
                uint64_t arrival_ms);

/* One 20 ms frame (rate / 50 samples: OPUSC_FRAME at 48 kHz) into pcm: 1 with audio, 0 when
 * there is nothing to play yet (before the stream starts, while
 * buffering, or after the sender went quiet). */
int jitter_get(struct jitter *jb, int16_t *pcm);

/* The Opus packet the last jitter_get decoded, as it arrived; NULL when that
 * frame was concealed, rebuilt from FEC, drained from a longer packet, or
 * not played. Valid until the next jitter_put or jitter_get. */
const uint8_t *jitter_last_packet(const struct jitter *jb, size_t *len);

void jitter_get_stats(const struct jitter *jb, struct jitter_stats *st);

#endif
