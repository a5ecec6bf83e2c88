/*
 * callrec: a call's record and the service's call metrics, made from what
 * the control loop already sees.
 *
 * Every agent event for the page passes through the control loop as JSON.
 * The few that make the record (final transcripts, replies, latency, usage,
 * engine errors, tool calls and their results) are read here and become
 * store rows; the same events feed the latency histograms of /metrics. So
 * recording a call adds no work on a media worker, and none on the
 * database here: the store queues it.
 */
#ifndef TS_APP_CALLREC_H
#define TS_APP_CALLREC_H

#include <stdint.h>

#include "core/prom.h"
#include "media/worker.h"
#include "store/store.h"

/* The service's figures over every call; owned by the control loop. */
struct callrec_metrics;

int callrec_metrics_new(struct callrec_metrics **out);
void callrec_metrics_free(struct callrec_metrics *m);
/*
 * The prices (cfg's price_* keys, copied) each call's estimated cost is
 * worked out with when its record is finished. Until it is called, or
 * with every price 0, calls are not priced: their cost is stored as NULL.
 */
void callrec_metrics_set_prices(struct callrec_metrics *m, const struct config *cfg);
void callrec_metrics_write(const struct callrec_metrics *m, int active, struct prom_buf *b);

/* What is known of a call when its offer is accepted. Strings are copied. */
struct callrec_start {
  const char *id, *remote_addr, *user_agent, *agent;
  const char *asr, *asr_model, *llm, *llm_model, *tts, *tts_model, *tts_voice, *language;
  const char *settings_json;
};

struct callrec;

/* `st` may be NULL (records off): then only the metrics are kept. NULL on no memory. */
struct callrec *callrec_new(struct store *st, struct callrec_metrics *m,
                            const struct callrec_start *start);
void callrec_connected(struct callrec *r);
/* One agent event (a JSON object's text) on its way to the page. */
void callrec_agent_event(struct callrec *r, const char *json);
/* Writes the end of the call and frees the record. */
void callrec_end(struct callrec *r, const char *reason, const struct media_call_summary *s);

/* Milliseconds since the Unix epoch. */
int64_t callrec_now_ms(void);

#endif
