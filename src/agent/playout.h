/*
 * playout: the AI's outgoing speech for one call, queued at the rate the
 * TTS engine speaks at and taken 20 ms at a time, at 48 kHz, by the media
 * tick.
 *
 * Speech arrives sentence by sentence (each a segment, whose text is
 * known) in chunks at whatever rate the TTS engine produces; it leaves one
 * frame per tick. The queue remembers where each segment starts and how
 * much of it has been played, so that when the caller cuts in, the part of
 * the reply they actually heard is known, word by word.
 */
#ifndef TS_AGENT_PLAYOUT_H
#define TS_AGENT_PLAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define PLAYOUT_RATE 48000
#define PLAYOUT_FRAME 960

struct playout;

int playout_new(struct playout **out);
void playout_free(struct playout *p);

/* Starts the segment that the following audio belongs to. */
int playout_begin_segment(struct playout *p, const char *text);
/* Appends audio of the current segment at `rate` Hz (kept at that rate;
 * resampled to 48 kHz as it is taken). */
int playout_append(struct playout *p, const int16_t *pcm, size_t n, int rate);
/* The current segment has all its audio. */
void playout_end_segment(struct playout *p);

/*
 * Takes one frame. Returns 1 with audio, 0 when nothing is queued (pcm
 * untouched). `started` is set to the text of a segment whose first frame
 * this is (NULL otherwise), valid until the next call.
 */
int playout_take(struct playout *p, int16_t *pcm, const char **started);

#define PLAYOUT_FRAME16 320

/*
 * The frame the last playout_take gave, at 16 kHz, when the reply is kept
 * at 16 kHz: the stored samples that made it, delayed so that they are
 * what a 48 -> 16 kHz resampler (quality 3) fed the frames taken would
 * give, to within rounding. A caller that needs what was sent at 16 kHz
 * (the echo canceller's reference) then need not resample the frame back
 * down. NULL when the last take gave nothing or the reply is kept at
 * another rate. Valid until the next take.
 */
const int16_t *playout_sent16(const struct playout *p);

/* The highest rate the reply's audio came in at (0 before any): nothing in it lies above
 * half of that, whatever rate it is sent at. */
int playout_made_rate(const struct playout *p);

/* Queued and not yet played, in 48 kHz samples. */
size_t playout_queued(const struct playout *p);
/* Bytes held for queued audio (0 once everything has been played). */
size_t playout_memory(const struct playout *p);
/* 1 when every segment begun has ended and all audio has been played. */
int playout_drained(const struct playout *p);

/*
 * The text played so far: whole segments, plus the share of the words of
 * a segment in progress that matches the share of its audio played.
 * `*complete` is 1 when nothing begun was left unplayed.
 */
void playout_played_text(const struct playout *p, char *out, size_t cap, int *complete);

/* Drops everything: queued audio and segments. */
void playout_clear(struct playout *p);

#endif
