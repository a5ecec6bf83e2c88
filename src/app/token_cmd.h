/* token_cmd: `tingshuo token`, a call token minted on the command line. */
#ifndef TS_APP_TOKEN_CMD_H
#define TS_APP_TOKEN_CMD_H

#include <stdio.h>

/* argv are the arguments after "token"; returns the exit status. */
int token_cmd_main(int argc, char **argv, char *const *envp);
void token_cmd_usage(FILE *out);

#endif
