/*
 * Opus for voice calls.
 *
 * Browsers send 20 ms Opus frames at 48 kHz with in-band FEC when asked
 * (useinbandfec=1 in our answer): each packet then also carries a coarse
 * copy of the previous frame, so a single lost packet can be rebuilt from
 * the next one instead of being guessed by packet-loss concealment.
 *
 * An encoder is mono at 20 ms, in one of two kinds. A microphone
 * (OPUSC_MIC) is coded as browsers code theirs: Opus's VOIP mode, SILK or
 * hybrid, with in-band FEC. The agent's voice (OPUSC_AGENT) is synthesised
 * speech sent to a browser, and there Opus's CELT layer alone does the job
 * at a third of the CPU: at 32 kbps it codes speech full-band and well, and
 * the encoder is the largest per-call cost of a server that talks to many
 * callers at once (about 45 us a frame against 145 us for hybrid, with
 * Debian's libopus on one core). CELT has no in-band FEC, so as soon as the
 * browser's receiver reports loss, the agent's encoder is told its signal
 * is voice and Opus moves to hybrid, whose SILK layer carries the FEC copy;
 * when the loss clears it returns to CELT. Opus makes both switches itself,
 * without a glitch.
 *
 * Both kinds adapt to what the receiver reports: the expected loss
 * percentage sets how much FEC Opus embeds, and under loss the bitrate
 * rises (32 -> up to 48 kbps) so the FEC copy does not starve the primary
 * frame. DTX stays off so the receiver keeps getting a steady 50 packets a
 * second and its jitter buffer never mistakes silence for loss.
 *
 * Silence is most of what a call sends (the AI listens more than it
 * talks), and running the encoder on digital silence gives the same few
 * bytes every frame once its state has settled. So after SILENCE_SETTLE
 * silent frames the last packet is kept and sent again as long as the
 * silence lasts, without running the encoder: the stream is unchanged for
 * the receiver and a listening call costs no encoding at all. The encoder's
 * state is then that of a long silence, which is what it would have been.
 */
#include "audio/opus_codec.h"

#include <errno.h>
#include <opus/opus.h>
#include <stdlib.h>
#include <string.h>

#define BASE_BITRATE 32000
#define MAX_BITRATE 48000
#define SILENCE_SETTLE 5   /* silent frames encoded before the packet is reused */
#define SILENCE_MAX 64     /* a settled silence packet is a few bytes */

struct opusc_dec {
  OpusDecoder *dec;
  int rate;
};

struct opusc_enc {
  OpusEncoder *enc;
  int silent_run;                /* digital-silence frames in a row */
  uint8_t silence[SILENCE_MAX];  /* the settled silence packet, when silence_len > 0 */
  int silence_len;
  enum opusc_kind kind;
  int bitrate, base, loss;
};

struct opusc_dec *opusc_dec_new(void) { return opusc_dec_new_rate(OPUSC_RATE); }

struct opusc_dec *opusc_dec_new_rate(int rate) {
  struct opusc_dec *d = calloc(1, sizeof *d);
  int err;
  if (d) d->dec = opus_decoder_create(rate, 1, &err);
  if (d) d->rate = rate;
  if (d && !d->dec) {
    free(d);
    return NULL;
  }
  return d;
}

void opusc_dec_free(struct opusc_dec *d) {
  if (!d) return;
  opus_decoder_destroy(d->dec);
  free(d);
}

int opusc_decode(struct opusc_dec *d, const uint8_t *pkt, size_t len, int16_t *pcm, int cap) {
  if (!pkt || len == 0 || len > 1500) return -EBADMSG;
  int n = opus_packet_get_nb_samples(pkt, (opus_int32)len, d->rate);
  if (n <= 0 || n > cap) return -EBADMSG;
  n = opus_decode(d->dec, pkt, (opus_int32)len, pcm, cap, 0);
  return n < 0 ? -EBADMSG : n;
}

int opusc_conceal(struct opusc_dec *d, int16_t *pcm, int n) {
  int r = opus_decode(d->dec, NULL, 0, pcm, n, 0);
  return r < 0 ? -EIO : r;
}

int opusc_recover(struct opusc_dec *d, const uint8_t *next, size_t len, int16_t *pcm, int n) {
  if (!next || len == 0 || len > 1500) return -EBADMSG;
  int r = opus_decode(d->dec, next, (opus_int32)len, pcm, n, 1);
  return r < 0 ? -EBADMSG : r;
}

/* The agent's voice is coded as voice (hybrid, with FEC) only while there is loss. */
static int signal_for(const struct opusc_enc *e) {
  return e->kind == OPUSC_MIC || e->loss > 0 ? OPUS_SIGNAL_VOICE : OPUS_AUTO;
}

struct opusc_enc *opusc_enc_new(enum opusc_kind kind, int bitrate) {
  struct opusc_enc *e = calloc(1, sizeof *e);
  int err;
  if (!e) return NULL;
  e->kind = kind;
  e->enc = opus_encoder_create(OPUSC_RATE, 1,
                               kind == OPUSC_MIC ? OPUS_APPLICATION_VOIP : OPUS_APPLICATION_AUDIO, &err);
  if (!e->enc) {
    free(e);
    return NULL;
  }
  e->base = e->bitrate = bitrate > 0 ? bitrate : BASE_BITRATE;
  opus_encoder_ctl(e->enc, OPUS_SET_BITRATE(e->bitrate));
  opus_encoder_ctl(e->enc, OPUS_SET_INBAND_FEC(1));
  opus_encoder_ctl(e->enc, OPUS_SET_PACKET_LOSS_PERC(0));
  opus_encoder_ctl(e->enc, OPUS_SET_DTX(0));
  opus_encoder_ctl(e->enc, OPUS_SET_COMPLEXITY(5)); /* half the CPU of 10, near its quality for speech */
  opus_encoder_ctl(e->enc, OPUS_SET_SIGNAL(signal_for(e)));
  return e;
}

int opusc_enc_set_max_rate(struct opusc_enc *e, int hz) {
  int bw = hz <= 0 || hz > 24000 ? OPUS_BANDWIDTH_FULLBAND
           : hz > 16000          ? OPUS_BANDWIDTH_SUPERWIDEBAND
           : hz > 12000          ? OPUS_BANDWIDTH_WIDEBAND
           : hz > 8000           ? OPUS_BANDWIDTH_MEDIUMBAND
                                 : OPUS_BANDWIDTH_NARROWBAND;
  return opus_encoder_ctl(e->enc, OPUS_SET_MAX_BANDWIDTH(bw)) == OPUS_OK ? 0 : -EINVAL;
}

void opusc_enc_free(struct opusc_enc *e) {
  if (!e) return;
  opus_encoder_destroy(e->enc);
  free(e);
}

static int is_silent(const int16_t *pcm) {
  for (int i = 0; i < OPUSC_FRAME; i++)
    if (pcm[i]) return 0;
  return 1;
}

int opusc_encode(struct opusc_enc *e, const int16_t *pcm, uint8_t *out, size_t cap) {
  int silent = is_silent(pcm);
  if (silent && e->silence_len && (size_t)e->silence_len <= cap) {
    memcpy(out, e->silence, (size_t)e->silence_len);
    return e->silence_len;
  }
  int n = opus_encode(e->enc, pcm, OPUSC_FRAME, out, (opus_int32)cap);
  if (n < 0) return -EIO;
  e->silent_run = silent ? e->silent_run + 1 : 0;
  e->silence_len = 0;
  if (e->silent_run >= SILENCE_SETTLE && n <= SILENCE_MAX) {
    memcpy(e->silence, out, (size_t)n);
    e->silence_len = n;
  }
  return n;
}

void opusc_enc_adapt(struct opusc_enc *e, int fraction_lost) {
  int loss = fraction_lost * 100 / 256;
  if (loss > 30) loss = 30;
  /* Rise at once on loss, come down gently when it clears. */
  e->loss = loss >= e->loss ? loss : (e->loss * 3 + loss) / 4;
  int bitrate = e->base + (MAX_BITRATE - e->base) * (e->loss > 10 ? 10 : e->loss) / 10;
  opus_encoder_ctl(e->enc, OPUS_SET_PACKET_LOSS_PERC(e->loss));
  opus_encoder_ctl(e->enc, OPUS_SET_SIGNAL(signal_for(e)));
  if (bitrate != e->bitrate) opus_encoder_ctl(e->enc, OPUS_SET_BITRATE(bitrate));
  e->bitrate = bitrate;
}

int opusc_enc_bitrate(const struct opusc_enc *e) { return e->bitrate; }
int opusc_enc_loss_percent(const struct opusc_enc *e) { return e->loss; }
