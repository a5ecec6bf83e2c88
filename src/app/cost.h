/*
 * cost: what a call's use of the services cost, at the operator's prices.
 *
 * The services bill in their own units (tokens, characters, minutes of
 * audio); the operator states a price for each in the config (price_*
 * keys). This is the arithmetic that turns one into the other, kept apart
 * so that it can be checked on its own against figures worked out by hand.
 * It is an estimate: the services round, bill minimums and change prices,
 * and nothing here asks them what they actually charged.
 */
#ifndef TS_APP_COST_H
#define TS_APP_COST_H

#include "core/config.h"
#include "store/store.h"

struct cost_prices {
  double llm_input;  /* per million input tokens not read from the prompt cache */
  double llm_cached; /* per million input tokens read from the prompt cache */
  double llm_output; /* per million output tokens */
  double tts;        /* per million characters synthesised */
  double asr;        /* per minute of audio */
  char currency[16];
};

/* The price_* keys of `cfg`. */
void cost_prices_from_config(struct cost_prices *p, const struct config *cfg);

/* 1 when at least one price is set (> 0): only then is a cost estimated. */
int cost_priced(const struct cost_prices *p);

/*
 * The cost of `u` at `p`, in p->currency. Cached input tokens are priced
 * at llm_cached and the rest of the input at llm_input (tokens written to
 * the cache too: there is no price of their own for them); characters
 * played from the TTS cache cost nothing. 0 when nothing is priced: ask
 * cost_priced() first.
 */
double cost_estimate(const struct cost_prices *p, const struct store_usage *u);

#endif
