/*
 * reads: the history API's questions, answered from the database as the
 * JSON shapes of docs/api.md.
 */
#ifndef TS_STORE_READS_H
#define TS_STORE_READS_H

#include <jansson.h>
#include <stdint.h>

#include "core/config.h"
#include "store/db.h"
#include "store/store.h"

#define STORE_LIMIT_DEFAULT 50
#define STORE_LIMIT_MAX 200
#define STORE_ID_MAX 128   /* longest call id a cursor may carry */
#define STORE_TEXT_MAX 256 /* longest search text, bytes */

/* A checked and copied struct store_query. */
struct store_list_args {
  int64_t from_ms, to_ms;
  char *end_reason, *text;
  int has_cursor;
  int64_t cursor_ms;
  char cursor_id[STORE_ID_MAX + 1];
  int limit;
};

/* 0, -EINVAL for a bad filter or cursor, -ENOMEM. */
int store_list_args_parse(const struct store_query *q, struct store_list_args *out);
void store_list_args_free(struct store_list_args *a);

/* The opaque cursor for the page after the call (created_ms, id); 0 or -ENOSPC. */
int store_cursor_encode(int64_t created_ms, const char *id, char *out, size_t cap);
/* 0 or -EINVAL. `id` has room for STORE_ID_MAX + 1 bytes. */
int store_cursor_decode(const char *cursor, int64_t *created_ms, char *id);

/* Each: 0 with *out set, or -ENOENT, -EIO (database failed or answered nonsense), -ENOMEM. */
/* A recording is shown (with its size) only while its file exists. */
int store_read_list(struct db *db, const struct config *cfg, const struct store_list_args *a,
                    json_t **out);
int store_read_get(struct db *db, const struct config *cfg, const char *call_id, json_t **out);
/* Deletes the call (its turns go with it), then its recording file. */
int store_read_delete(struct db *db, const struct config *cfg, const char *call_id,
                      json_t **out);

#endif
