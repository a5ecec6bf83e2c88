#include "app/bench_cmd.h"
int bench_cmd_main(int argc, char **argv) { return 2; }
void bench_cmd_usage(FILE *out) {}
