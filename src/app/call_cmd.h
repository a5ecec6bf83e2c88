/* call_cmd: `tingshuo call`, one WebRTC call from the command line. */
#ifndef TS_APP_CALL_CMD_H
#define TS_APP_CALL_CMD_H

#include <stdio.h>

/* argv are the arguments after "call"; returns the exit status. */
int call_cmd_main(int argc, char **argv);
void call_cmd_usage(FILE *out);

#endif
