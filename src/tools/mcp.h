/*
 * mcp: a client of one Model Context Protocol server over Streamable HTTP
 * (JSON-RPC 2.0 POSTed to one URL; answers as JSON or as an SSE stream;
 * an Mcp-Session-Id header once the server gives one).
 *
 * It initializes, lists the server's tools (following nextCursor), and
 * lists them again when the server says they changed
 * (notifications/tools/list_changed); it calls a tool with tools/call.
 * Everything runs on the control loop, through its HTTP client. A server
 * that is down is retried with backoff; its tools are simply absent until
 * it answers.
 */
#ifndef TS_TOOLS_MCP_H
#define TS_TOOLS_MCP_H

#include <jansson.h>

#include "engines/engine.h"

struct mcp_client;
struct mcp_call;

/* Each time the server's tool list is known anew: `tools` is its array of MCP tool
 * objects ({name, description, inputSchema}), borrowed for the callback. Every tool
 * has a name (1 to 128 bytes, unique), a description ("" if none) and an object
 * inputSchema ({"type": "object"} if none); at most 128. An empty array withdraws
 * the tools announced before: the server stopped answering. */
typedef void (*mcp_tools_fn)(void *user, json_t *tools);

/* Control loop. Starts connecting at once. */
int mcp_client_new(struct mcp_client **out, const struct engine_env *env, const char *url,
                   mcp_tools_fn on_tools, void *user);
/* Control loop; calls in flight end without a callback. NULL is fine. Not from
 * inside one of the client's own callbacks. */
void mcp_client_free(struct mcp_client *c);

/* A tool's result: `result_json` is the tools/call result object (content, isError) or
 * {"error": "..."} when the request itself failed (is_error = 1 then). is_error is 1
 * too when the result says "isError": true (result_json is then the result object). */
typedef void (*mcp_result_fn)(void *user, const char *result_json, int is_error);

/*
 * Control loop. arguments_json: a JSON object's text (NULL or "" = {}); anything
 * else is -EINVAL, without a callback. timeout_ms <= 0 means 10 s. Otherwise `done`
 * runs exactly once, never inside this call; the call waits for a session under way,
 * and ends at once with an error while the server is down. The call is freed after
 * its callback (so *out is valid only until then). Never retried by the HTTP
 * client; sent a second time only after a 404 (a session the server forgot, so it
 * never ran the tool).
 */
int mcp_call_tool(struct mcp_client *c, const char *name, const char *arguments_json,
                  int timeout_ms, mcp_result_fn done, void *user, struct mcp_call **out);
/* Control loop, before the callback: no callback after this (the server is told with
 * notifications/cancelled). */
void mcp_call_cancel(struct mcp_call *call);

#endif
