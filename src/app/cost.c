/*
 * cost: the estimate of what a call's use of the services cost.
 *
 * Services report every prompt token as input and, among them, those read
 * from their prompt cache (sold at a fraction of the price), so the cached
 * ones are taken out of the input before it is priced. A service that
 * reported more cached tokens than input would otherwise make a negative
 * cost; the input is then taken to be all cached. Anthropic charges a
 * quarter more for tokens written to its cache; with no key for that, they
 * are priced as ordinary input, so such a first turn is estimated a little
 * low. Characters the TTS cache served were never sent to the service.
 */
#include "app/cost.h"

#include <stdio.h>

void cost_prices_from_config(struct cost_prices *p, const struct config *cfg) {
  p->llm_input = cfg->price_llm_input;
  p->llm_cached = cfg->price_llm_cached;
  p->llm_output = cfg->price_llm_output;
  p->tts = cfg->price_tts;
  p->asr = cfg->price_asr;
  snprintf(p->currency, sizeof p->currency, "%s", cfg->price_currency);
}

int cost_priced(const struct cost_prices *p) {
  return p->llm_input > 0 || p->llm_cached > 0 || p->llm_output > 0 || p->tts > 0 || p->asr > 0;
}

double cost_estimate(const struct cost_prices *p, const struct store_usage *u) {
  double cached = (double)u->llm_cached_tokens;
  double uncached = (double)u->llm_input_tokens - cached;
  if (uncached < 0) uncached = 0;
  double per_million = uncached * p->llm_input + cached * p->llm_cached +
                       (double)u->llm_output_tokens * p->llm_output +
                       (double)u->tts_chars * p->tts;
  return per_million / 1e6 + u->asr_seconds / 60.0 * p->asr;
}
