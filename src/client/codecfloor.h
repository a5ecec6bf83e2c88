/*
 * codecfloor: what one call's Opus work costs on this machine, measured in
 * this process: the least CPU a server can spend per call and still decode
 * what the caller sends and encode what it says back.
 *
 * A server that reports its CPU per call is only as good as the distance
 * between that figure and this one; everything above the floor is transport,
 * pacing, the agent and overhead, which is where a profile should look.
 */
#ifndef TS_CLIENT_CODECFLOOR_H
#define TS_CLIENT_CODECFLOOR_H

#include <stddef.h>
#include <stdint.h>

struct codec_floor {
  int decode_rate;          /* Hz the caller's frames are decoded at */
  double decode_us;         /* CPU per 20 ms frame decoded */
  double encode_us;         /* CPU per 20 ms frame encoded at 48 kHz */
  double percent_of_core;   /* 50 decodes + 50 encodes a second, in % of one core */
  size_t frames;            /* frames of each timed */
};

/*
 * Times decoding and encoding 20 ms frames of `pcm` (48 kHz mono speech):
 * the caller's side coded as a browser codes for a receiver at
 * `decode_rate` (its maxplaybackrate) and decoded at that rate, as
 * tingshuo's voice agent does; the reply coded as the server codes its
 * voice (CELT, 48 kHz). Each is repeated for at least `min_cpu_s` of CPU
 * time. 0, -EINVAL (fewer than 10 frames, a bad rate) or -ENOMEM.
 */
int codec_floor_measure(const int16_t *pcm, size_t n, int decode_rate, double min_cpu_s,
                        struct codec_floor *out);

#endif
