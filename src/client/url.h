/*
 * url: the server address a client is given on the command line.
 *
 * ws:// and wss:// name the signaling WebSocket directly; http:// and
 * https:// name the server's page, whose WebSocket is /ws on the same host
 * (so the address the server prints can be pasted as it is). A URL with no
 * path, or only "/", means /ws.
 */
#ifndef TS_CLIENT_URL_H
#define TS_CLIENT_URL_H

#include <stddef.h>

struct ws_url {
  int tls;
  char host[256]; /* without brackets for IPv6 */
  int port;
  char path[512];
};

/* 0, or -EINVAL with `err` saying what is wrong. */
int ws_url_parse(const char *text, struct ws_url *u, char *err, size_t errlen);

#endif
