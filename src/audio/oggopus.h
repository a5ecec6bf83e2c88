/*
 * oggopus: two mono Opus streams, already coded, as one stereo Ogg Opus file,
 * without decoding or encoding anything.
 *
 * oggopus_pair joins one 20 ms packet of each side into one Opus
 * multistream packet (RFC 7845 channel mapping family 1: two streams, none
 * coupled, stream 0 left, stream 1 right); the writer puts such packets
 * into Ogg pages (OpusHead, OpusTags, then audio) on a file descriptor.
 * Used by the call recorder (src/media/recorder.h). Prefix oggopus_.
 */
#ifndef TS_AUDIO_OGGOPUS_H
#define TS_AUDIO_OGGOPUS_H

#include <stddef.h>
#include <stdint.h>

#define OGGOPUS_RATE 48000
#define OGGOPUS_FRAME 960 /* 20 ms: the duration of every packet of a recording */
#define OGGOPUS_PRE_SKIP 312 /* libopus's encoder delay at 48 kHz: 6.5 ms */
#define OGGOPUS_MAX_SIDE 1500 /* longest packet taken from one side */
/* A pair is at most both packets plus the first one's two extra length bytes. */
#define OGGOPUS_MAX_PAIR (2 * OGGOPUS_MAX_SIDE + 2)

/*
 * Rewrites one Opus packet in self-delimiting framing (RFC 6716 Appendix
 * B): the same TOC code and frames, with the last frame's length stated so
 * that another stream's packet may follow. Code 3 padding is dropped.
 * Returns the bytes written, -EBADMSG when `pkt` is not a valid Opus packet,
 * -ENOSPC when `cap` is too small (len + 2 always suffices).
 */
int oggopus_self_delimit(const uint8_t *pkt, size_t len, uint8_t *out, size_t cap);

/* 1 when `pkt` can be one stream of a pair: a valid Opus packet of exactly 20 ms. */
int oggopus_usable(const uint8_t *pkt, size_t len);

/* Which sides oggopus_pair replaced although a packet was given. */
#define OGGOPUS_LEFT_BAD 1
#define OGGOPUS_RIGHT_BAD 2

/*
 * Builds the two-stream packet of one 20 ms tick. A side without a packet
 * (NULL or len 0) becomes a zero-length frame, which a decoder conceals
 * (RFC 6716 section 3.2.1); so does a side whose packet is malformed, too
 * long, or not exactly 20 ms long (a multistream packet's streams must all
 * last as long), and then its OGGOPUS_*_BAD bit is set in *bad (may be
 * NULL). Returns the bytes written or -ENOSPC; never fails on bad packets.
 */
int oggopus_pair(const uint8_t *left, size_t left_len, const uint8_t *right, size_t right_len,
                 uint8_t *out, size_t cap, unsigned *bad);

/*
 * A 20 ms packet of digital silence: what libopus's encoder makes of zeros
 * (CELT, full band, its silence flag set). Unlike a zero-length frame it
 * decodes to exact zeros and ends a concealment, for sides that stay
 * without packets for long. Sets *len.
 */
const uint8_t *oggopus_silence(size_t *len);

struct oggopus_writer;

/*
 * Starts an Ogg Opus stream on `fd` (which stays the caller's): writes the
 * OpusHead page (2 channels, mapping family 1, 2 streams, 0 coupled,
 * pre-skip OGGOPUS_PRE_SKIP) and the OpusTags page, with
 * `vendor` and the "KEY=value" `tags`. Returns 0 or a negative errno.
 */
int oggopus_writer_new(struct oggopus_writer **out, int fd, uint32_t serial, const char *vendor,
                       const char *const *tags, int ntags);

/* Adds one 20 ms packet (from oggopus_pair); `eos` marks the stream's last. */
int oggopus_writer_add(struct oggopus_writer *w, const uint8_t *pkt, size_t len, int eos);

/* Writes every packet added so far as complete pages, and returns 0 or a
 * negative errno. What was written before a crash stays playable. */
int oggopus_writer_flush(struct oggopus_writer *w);

/* Samples (48 kHz) added so far, the granule position of the last packet:
 * pre-skip included, so the file plays for OGGOPUS_PRE_SKIP samples less. */
uint64_t oggopus_writer_samples(const struct oggopus_writer *w);

/* Frees the writer; packets not flushed are lost. Does not close fd. */
void oggopus_writer_free(struct oggopus_writer *w);

#endif
