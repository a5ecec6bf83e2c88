/*
 * wav: reading and writing WAV files for the command-line client.
 *
 * Reads RIFF/WAVE with PCM 8, 16, 24 or 32 bits, or 32-bit float, any rate
 * and channel count (WAVE_FORMAT_EXTENSIBLE too), into 16-bit samples;
 * wav_mono48k() turns that into what a WebRTC call sends: 48 kHz mono.
 * Writes 16-bit PCM, streaming, with the sizes fixed up on close.
 */
#ifndef TS_CLIENT_WAV_H
#define TS_CLIENT_WAV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct wav {
  int rate, channels;
  size_t frames;  /* samples per channel */
  int16_t *pcm;   /* interleaved, frames * channels */
};

/* From memory; -EBADMSG with `err` saying why when it is not a WAV we read. */
int wav_parse(const uint8_t *data, size_t len, struct wav *out, char *err, size_t errlen);
int wav_read(const char *path, struct wav *out, char *err, size_t errlen);
void wav_free(struct wav *w);

/* Down-mixed to mono and resampled to 48 kHz; *out is malloc'd. */
int wav_mono48k(const struct wav *in, int16_t **out, size_t *n);

struct wav_writer;
int wav_writer_open(struct wav_writer **out, const char *path, int rate, int channels);
int wav_writer_write(struct wav_writer *w, const int16_t *pcm, size_t frames);
/* Writes the final sizes and closes; 0 or a negative errno. */
int wav_writer_close(struct wav_writer *w);

#endif
