/* cli: turning a command's arguments into a validated configuration. */
#ifndef TS_APP_CLI_H
#define TS_APP_CLI_H

#include <stddef.h>

#include "core/config.h"

/*
 * Builds the configuration for a command from defaults, --config FILE, the
 * environment (envp) and the remaining --key-name VALUE flags, in that order.
 * Returns 0, 1 when --help was given (nothing else done), or a negative errno
 * with `err` saying what was wrong.
 */
int cli_load_config(struct config *cfg, int argc, char **argv, char *const *envp, char *err,
                    size_t errlen);

#endif
