/*
 * resample: sample-rate conversion of mono 16-bit PCM, streaming (state is
 * kept between calls, so chunk boundaries leave no clicks). Built on
 * speexdsp's resampler.
 */
#ifndef TS_AUDIO_RESAMPLE_H
#define TS_AUDIO_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

struct resampler;

/* quality 0..10 (speexdsp's scale); 3 is good for voice and cheap. */
int resampler_new(struct resampler **out, int in_rate, int out_rate, int quality);
void resampler_free(struct resampler *r);

/*
 * Converts all of `in` (n samples); writes at most `cap` samples to `out`
 * and returns how many. `cap` of n * out_rate / in_rate + 16 is always
 * enough.
 */
size_t resampler_process(struct resampler *r, const int16_t *in, size_t n, int16_t *out,
                         size_t cap);

/*
 * Converts a whole buffer with a resampler of its own (the same samples
 * resampler_process would give). *out is calloc'd and the caller's: *out_n
 * samples, then at least one 20 ms frame of zeros at out_rate, so a caller
 * cutting it into 20 ms frames may round the last one up.
 */
int resampler_convert(const int16_t *in, size_t n, int in_rate, int out_rate, int quality,
                      int16_t **out, size_t *out_n);

/* Forgets the history (between unrelated streams). */
void resampler_reset(struct resampler *r);

/* The filter's delay, in input samples: output sample k * out_rate / in_rate
 * is input sample k - latency (for rates that divide evenly). */
int resampler_input_latency(const struct resampler *r);

#endif
