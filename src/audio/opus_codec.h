/* opus_codec: Opus at 48 kHz mono for WebRTC voice, both ways. Prefix opusc_ (opus_ is libopus's). */
#ifndef TS_AUDIO_OPUS_CODEC_H
#define TS_AUDIO_OPUS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define OPUSC_RATE 48000
#define OPUSC_FRAME 960        /* 20 ms */
#define OPUSC_MAX_FRAME 5760   /* 120 ms, the longest Opus packet */

struct opusc_dec;
struct opusc_dec *opusc_dec_new(void);
/* A decoder whose output is at `rate` (8000, 12000, 16000, 24000 or 48000):
 * Opus decodes straight to a lower rate, cheaper than decoding at 48 kHz and
 * resampling. Frame sizes then scale: 20 ms is rate / 50 samples. */
struct opusc_dec *opusc_dec_new_rate(int rate);
void opusc_dec_free(struct opusc_dec *d);
/* Decodes a packet; returns samples written (<= cap) or a negative errno. */
int opusc_decode(struct opusc_dec *d, const uint8_t *pkt, size_t len, int16_t *pcm, int cap);
/* Conceals one lost frame of `n` samples. */
int opusc_conceal(struct opusc_dec *d, int16_t *pcm, int n);
/* Rebuilds the lost frame before `next` from the in-band FEC it carries. */
int opusc_recover(struct opusc_dec *d, const uint8_t *next, size_t len, int16_t *pcm, int n);

struct opusc_enc;
enum opusc_kind {
  OPUSC_MIC,   /* a caller's microphone, coded as browsers do: SILK/hybrid, in-band FEC */
  OPUSC_AGENT, /* the agent's voice: CELT (cheapest), hybrid with FEC while there is loss */
};
/* bitrate 0: 32 kbps. */
struct opusc_enc *opusc_enc_new(enum opusc_kind kind, int bitrate);
/* Keeps the coded band within hz / 2: what a receiver plays (its SDP maxplaybackrate,
 * RFC 7587), or what a signal made at hz holds. 0: the full band. */
int opusc_enc_set_max_rate(struct opusc_enc *e, int hz);
void opusc_enc_free(struct opusc_enc *e);
/* Encodes one 20 ms frame; returns bytes written or a negative errno. */
int opusc_encode(struct opusc_enc *e, const int16_t *pcm, uint8_t *out, size_t cap);
/* Adapts FEC and bitrate to the loss the receiver reports (RTCP fraction, 0..255). */
void opusc_enc_adapt(struct opusc_enc *e, int fraction_lost);
int opusc_enc_bitrate(const struct opusc_enc *e);
int opusc_enc_loss_percent(const struct opusc_enc *e);

#endif
