/*
 * Jitter buffer.
 *
 * Packets are kept in a ring indexed by sequence number. Playout starts
 * once `target` frames are buffered and then advances one sequence number
 * per 20 ms pull. For each frame, in order of preference:
 *
 *   the packet itself, decoded;
 *   the next packet's in-band FEC copy of it (Opus LBRR), when the next
 *     packet has arrived but this one has not;
 *   packet-loss concealment, when neither is there.
 *
 * The target depth follows the measured interarrival jitter (twice the
 * smoothed deviation plus one frame, 40 ms to 200 ms): a calm network gets
 * low latency, a bumpy one fewer gaps. When the buffer holds much more than
 * the target (after a burst), whole frames are skipped to catch up. After
 * 200 ms with nothing to play the stream is considered paused (the sender
 * stopped, or the network did) and playout waits to refill, instead of
 * concealing silence forever.
 *
 * Packets longer than 20 ms decode into a carry buffer that later pulls
 * drain, so the caller always gets exactly 20 ms.
 *
 * Memory follows what the stream uses: a slot's bytes are allocated when a
 * packet first needs them and kept for the packets that reuse the slot,
 * grown only when a larger one comes. A voice stream's packets are tens to
 * a couple of hundred bytes, so the ring costs a few kilobytes where room
 * for 64 packets of the largest size would cost 96 KB per call; and the
 * carry holds 120 ms at the decoder's rate, not at 48 kHz.
 */
#include "audio/jitter.h"

#include <stdlib.h>
#include <string.h>

#define SLOTS 64          /* 1.28 s of 20 ms packets */
#define MAX_PAYLOAD 1500
#define SLOT_ROUND 64     /* slot buffers grow in steps of this many bytes */
#define CARRY_FRAMES 6    /* 120 ms, the longest Opus packet */
#define MIN_TARGET 2
#define MAX_TARGET 10
#define PAUSE_FRAMES 10

struct slot {
  int used;
  uint16_t seq;
  uint16_t len, cap;
  uint8_t *data; /* cap bytes, kept from packet to packet */
};

struct jitter {
  struct opusc_dec *dec;
  struct slot slots[SLOTS];
  int started, playing, misses;
  uint16_t next; /* next sequence number to play */
  int target;
  double jitter_ms;
  uint64_t last_arrival;
  uint16_t last_seq;
  int have_last;
  int frame; /* samples per 20 ms at the decoder's rate */
  int16_t *carry; /* CARRY_FRAMES * frame samples */
  int carry_len, carry_pos;
  const struct slot *last; /* the packet the last jitter_get decoded, or NULL */
  struct jitter_stats st;
};

struct jitter *jitter_new(void) { return jitter_new_rate(OPUSC_RATE); }

struct jitter *jitter_new_rate(int rate) {
  struct jitter *jb = calloc(1, sizeof *jb);
  if (!jb) return NULL;
  jb->frame = rate / 50;
  jb->dec = opusc_dec_new_rate(rate);
  jb->carry = jb->frame > 0 ? malloc(sizeof *jb->carry * CARRY_FRAMES * (size_t)jb->frame) : NULL;
  if (!jb->dec || !jb->carry) {
    jitter_free(jb);
    return NULL;
  }
  jb->target = MIN_TARGET;
  return jb;
}

void jitter_free(struct jitter *jb) {
  if (!jb) return;
  opusc_dec_free(jb->dec);
  for (int i = 0; i < SLOTS; i++) free(jb->slots[i].data);
  free(jb->carry);
  free(jb);
}

static int16_t seq_diff(uint16_t a, uint16_t b) { return (int16_t)(uint16_t)(a - b); }

/* Frames buffered at or after `next`. */
static int depth(const struct jitter *jb) {
  int n = 0;
  for (int i = 0; i < SLOTS; i++)
    if (jb->slots[i].used && seq_diff(jb->slots[i].seq, jb->next) >= 0) n++;
  return n;
}

static void update_jitter(struct jitter *jb, uint16_t seq, uint64_t arrival) {
  if (jb->have_last) {
    int16_t ds = seq_diff(seq, jb->last_seq);
    if (ds > 0 && ds < 50) {
      double d = (double)(int64_t)(arrival - jb->last_arrival) - 20.0 * ds;
      if (d < 0) d = -d;
      jb->jitter_ms += (d - jb->jitter_ms) / 16.0;
      int t = (int)((2 * jb->jitter_ms + 20 + 19) / 20);
      jb->target = t < MIN_TARGET ? MIN_TARGET : t > MAX_TARGET ? MAX_TARGET : t;
    }
  }
  if (!jb->have_last || seq_diff(seq, jb->last_seq) > 0) {
    jb->last_seq = seq;
    jb->last_arrival = arrival;
    jb->have_last = 1;
  }
}

void jitter_put(struct jitter *jb, uint16_t seq, const uint8_t *payload, size_t len,
                uint64_t arrival_ms) {
  if (len == 0 || len > MAX_PAYLOAD) return;
  jb->st.received++;
  if (!jb->started) {
    jb->started = 1;
    jb->next = seq;
  }
  int16_t ahead = seq_diff(seq, jb->next);
  if (ahead < 0 && jb->playing) {
    jb->st.late++;
    return;
  }
  if (ahead < 0 || ahead >= SLOTS) {
    /* A new start (or a jump): restart playout from here. */
    for (int i = 0; i < SLOTS; i++) jb->slots[i].used = 0;
    jb->last = NULL;
    jb->next = seq;
    jb->playing = 0;
  }
  struct slot *s = &jb->slots[seq % SLOTS];
  if (s->used && s->seq == seq) {
    jb->st.duplicate++;
    return;
  }
  if (len > s->cap) {
    size_t cap = (len + SLOT_ROUND - 1) / SLOT_ROUND * SLOT_ROUND;
    uint8_t *d = realloc(s->data, cap);
    if (!d) return; /* as if lost: concealment covers it */
    if (jb->last == s) jb->last = NULL;
    s->data = d;
    s->cap = (uint16_t)cap;
  }
  s->used = 1;
  s->seq = seq;
  s->len = (uint16_t)len;
  memcpy(s->data, payload, len);
  update_jitter(jb, seq, arrival_ms);
}

static struct slot *slot_for(struct jitter *jb, uint16_t seq) {
  struct slot *s = &jb->slots[seq % SLOTS];
  return s->used && s->seq == seq ? s : NULL;
}

/* Decodes frame `next` into the carry buffer by the best means available. */
static void produce(struct jitter *jb) {
  struct slot *s = slot_for(jb, jb->next), *after = slot_for(jb, (uint16_t)(jb->next + 1));
  int n = -1;
  if (s) {
    n = opusc_decode(jb->dec, s->data, s->len, jb->carry, CARRY_FRAMES * jb->frame);
    s->used = 0; /* its bytes stay until a jitter_put reuses the slot */
    if (n > 0) {
      jb->st.played++;
      jb->last = s;
    }
  } else if (after) {
    n = opusc_recover(jb->dec, after->data, after->len, jb->carry, jb->frame);
    if (n > 0) jb->st.recovered++;
  }
  if (n <= 0) {
    n = opusc_conceal(jb->dec, jb->carry, jb->frame);
    jb->st.concealed++;
    if (n <= 0) {
      memset(jb->carry, 0, sizeof(int16_t) * jb->frame);
      n = jb->frame;
    }
  }
  jb->misses = s || after ? 0 : jb->misses + 1;
  jb->carry_len = n;
  jb->carry_pos = 0;
  jb->next++;
}

static int take_carry(struct jitter *jb, int16_t *pcm) {
  int have = jb->carry_len - jb->carry_pos;
  int n = have < jb->frame ? have : jb->frame;
  memcpy(pcm, jb->carry + jb->carry_pos, sizeof(int16_t) * (size_t)n);
  if (n < jb->frame) memset(pcm + n, 0, sizeof(int16_t) * (size_t)(jb->frame - n));
  jb->carry_pos += n;
  return 1;
}

int jitter_get(struct jitter *jb, int16_t *pcm) {
  jb->last = NULL;
  if (jb->carry_pos < jb->carry_len) return take_carry(jb, pcm);
  if (!jb->started) return 0;
  int d = depth(jb);
  if (!jb->playing) {
    if (d < jb->target) return 0;
    jb->playing = 1;
    jb->misses = 0;
  }
  while (d > jb->target + 4) { /* catch up after a burst */
    struct slot *s = slot_for(jb, jb->next);
    if (s) s->used = 0;
    jb->next++;
    jb->st.dropped++;
    d--;
  }
  if (d == 0 && jb->misses >= PAUSE_FRAMES) {
    jb->playing = 0; /* the sender paused: wait to refill */
    return 0;
  }
  produce(jb);
  return take_carry(jb, pcm);
}

const uint8_t *jitter_last_packet(const struct jitter *jb, size_t *len) {
  *len = jb->last ? jb->last->len : 0;
  return jb->last ? jb->last->data : NULL;
}

void jitter_get_stats(const struct jitter *jb, struct jitter_stats *st) {
  *st = jb->st;
  st->target_ms = jb->target * 20;
  st->depth_ms = depth(jb) * 20;
}
