/*
 * writes: what the store's thread does to the database besides answering
 * reads: one record event, crash recovery, retention.
 */
#ifndef TS_STORE_WRITES_H
#define TS_STORE_WRITES_H

#include <stdint.h>

#include "core/config.h"
#include "store/db.h"
#include "store/queue.h"

/* The end reason given to calls a crash left open. */
#define STORE_REASON_STOPPED "server stopped"

/* Writes one event (an upsert or an update); a db_exec result. `now_ms` fills missing times. */
int store_write_event(struct db *db, const struct store_event *ev, int64_t now_ms);

/*
 * Closes the calls of `node` that have no end, as a crash leaves them:
 * end_reason STORE_REASON_STOPPED, ended at their last turn (else when
 * they connected, else when they were created), their usage the sum of
 * their turns' and their cost unknown. *closed = how many.
 */
int store_recover_calls(struct db *db, const char *node, int64_t *closed);

/*
 * Deletes up to `max` calls created before `cutoff_ms` (their turns go
 * with them), then their recording files. *purged = how many calls.
 */
int store_purge_calls(struct db *db, const struct config *cfg, int64_t cutoff_ms, int max,
                      int *purged);

/* Removes data_dir/recordings/<file>, if `file` is a plain name; a missing file is fine. */
void store_remove_recording(const struct config *cfg, const char *file);

#endif
