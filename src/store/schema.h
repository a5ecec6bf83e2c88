/*
 * schema: the store's tables, created and upgraded by numbered migrations.
 */
#ifndef TS_STORE_SCHEMA_H
#define TS_STORE_SCHEMA_H

#include <stddef.h>

#include "store/db.h"

/* The newest schema this binary knows. */
#define SCHEMA_VERSION 3

/*
 * Brings the database to SCHEMA_VERSION in one transaction. 0, or: -ENOTSUP
 * when the database is newer than SCHEMA_VERSION (nothing changed), -EIO
 * or -EINVAL from the database. `err` says what happened.
 */
int schema_migrate(struct db *db, char *err, size_t errlen);

#endif
