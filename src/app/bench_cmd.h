/* bench_cmd: `tingshuo bench`, many concurrent calls against one server, measured. */
#ifndef TS_APP_BENCH_CMD_H
#define TS_APP_BENCH_CMD_H

#include <stdio.h>

/* argv are the arguments after "bench"; returns the exit status. */
int bench_cmd_main(int argc, char **argv);
void bench_cmd_usage(FILE *out);

#endif
