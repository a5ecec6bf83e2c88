/*
 * args: parsing the values of the client commands' flags, with messages
 * that name the flag and say what was expected.
 */
#ifndef TS_CLIENT_ARGS_H
#define TS_CLIENT_ARGS_H

#include <stddef.h>

/* "GAIN:DELAY_MS", e.g. "0.5:120": gain 0..4, delay 0..2000 ms. */
int args_echo(const char *text, double *gain, int *delay_ms, char *err, size_t errlen);
/* A number within [min, max] (seconds, counts...). */
int args_number(const char *flag, const char *text, double min, double max, double *out,
                char *err, size_t errlen);
/* A whole number within [min, max]. */
int args_int(const char *flag, const char *text, long min, long max, long *out, char *err,
             size_t errlen);

#endif
