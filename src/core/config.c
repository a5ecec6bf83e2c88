/*
 * Configuration.
 *
 * One table describes every key: its type, bounds, default and a line of
 * help. Everything else is derived from the table, so a key cannot exist in
 * the file syntax but be missing from the environment, the flags, --help or
 * the example file (a unit test checks the example against the table).
 *
 * Values are stored in the fixed-size fields of struct config, so loading
 * never allocates and a failed load leaves nothing to free. A value is fully
 * validated before it is stored: a bad value changes nothing.
 *
 * Secrets (API keys) are deliberately not keys: engines read them from the
 * environment variable a key names, so they never sit in a file or a log.
 */
#include "core/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

enum key_type {
  KEY_STRING, KEY_INT, KEY_DOUBLE, KEY_BOOL, KEY_ENUM, KEY_IP, KEY_ADDR, KEY_ADDR_OPT,
  KEY_ADDR_LIST, KEY_DB_URL, KEY_SECRET
};

struct key {
  const char *name;
  enum key_type type;
  size_t offset;
  size_t size;      /* string fields: capacity including the NUL */
  const char *def;  /* default, as text */
  long min, max;    /* KEY_INT bounds */
  const char *choices; /* KEY_ENUM: '|' separated */
  const char *help;
};

#define STR(field) KEY_STRING, offsetof(struct config, field), sizeof(((struct config *)0)->field)
#define TYPED(t, field) t, offsetof(struct config, field), sizeof(((struct config *)0)->field)
#define INT(field) KEY_INT, offsetof(struct config, field), sizeof(int)
#define DBL(field) KEY_DOUBLE, offsetof(struct config, field), sizeof(double)
#define BOOL(field) KEY_BOOL, offsetof(struct config, field), sizeof(int)

static const struct key keys[] = {
    {"listen", TYPED(KEY_ADDR, listen), "127.0.0.1:8080", 0, 0, NULL,
     "HTTP address (host:port; port 0 picks a free one). Browsers allow the microphone over "
     "plain HTTP only on localhost."},
    {"https_listen", TYPED(KEY_ADDR_OPT, https_listen), "", 0, 0, NULL,
     "HTTPS address (host:port), empty for none. Needed for callers on other machines."},
    {"tls_cert", STR(tls_cert), "", 0, 0, NULL,
     "PEM certificate (chain) for HTTPS; empty generates a self-signed one in data_dir."},
    {"tls_key", STR(tls_key), "", 0, 0, NULL, "PEM private key matching tls_cert."},
    {"data_dir", STR(data_dir), "data", 0, 0, NULL,
     "Directory for state: the generated certificate, call records. Created if missing."},
    {"web_root", STR(web_root), "", 0, 0, NULL,
     "Directory of the browser client served at /; empty = the one built with this binary."},
    {"log_level", TYPED(KEY_ENUM, log_level), "info", 0, 0, "error|warn|info|debug",
     "Least severe level written to stderr."},
    {"log_format", TYPED(KEY_ENUM, log_format), "text", 0, 0, "text|json",
     "text: one readable line per event; json: one JSON object per line."},
    {"agent", TYPED(KEY_ENUM, agent), "voice", 0, 0, "voice|echo",
     "What answers a call. voice: the voice agent (ASR, LLM, TTS); echo: plays the caller's "
     "speech back after they pause, to test the media path alone."},
    {"media_workers", INT(media_workers), "0", 0, 64, NULL,
     "Media event-loop threads, each with its own UDP port; 0 = one per core."},
    {"media_address", TYPED(KEY_IP, media_address), "0.0.0.0", 0, 0, NULL,
     "IP address the media UDP ports bind to: 0.0.0.0 (every IPv4 interface) or :: (every "
     "interface), or one address. Firefox never uses a loopback one, even on this machine."},
    {"media_port", INT(media_port), "0", 0, 65535, NULL,
     "UDP port of the first media worker; worker i uses media_port+i. 0 = any free port."},
    {"announce_address", TYPED(KEY_ADDR_LIST, announce_address), "", 0, 0, NULL,
     "Comma-separated IP addresses offered to browsers as candidates (public address behind "
     "NAT or in a cloud); empty = media_address, or when it is a wildcard every interface's "
     "address but link-local ones, loopback last."},
    {"max_calls", INT(max_calls), "500", 1, 100000, NULL,
     "Calls at once; further offers are refused with error code \"busy\"."},
    {"ice_timeout_ms", INT(ice_timeout_ms), "30000", 1000, 600000, NULL,
     "A call whose browser stops sending connectivity checks for this long is ended."},
    {"resume_timeout_ms", INT(resume_timeout_ms), "30000", 0, 600000, NULL,
     "How long a call waits for its page to reconnect after the WebSocket drops."},

    {"call_auth", TYPED(KEY_ENUM, call_auth), "auto", 0, 0, "auto|none|token",
     "Who may start a call. none: anyone who reaches /ws; token: only a caller holding a "
     "call token signed with call_secret (tingshuo token, POST /api/tokens); auto: none "
     "when listen and https_listen are loopback addresses, token otherwise."},
    {"call_secret", TYPED(KEY_SECRET, call_secret), "", 0, 0, NULL,
     "Secret that signs call tokens, at least 16 characters (32 random ones is better); "
     "set it in the environment "
     "(TINGSHUO_CALL_SECRET), never in a file others can read."},
    {"allowed_origins", STR(allowed_origins), "", 0, 0, NULL,
     "Comma-separated origins (https://shop.example) whose pages may open /ws besides the "
     "server's own and localhost; a WebSocket upgrade from any other Origin gets 403."},
    {"max_calls_per_ip", INT(max_calls_per_ip), "5", 0, 100000, NULL,
     "Calls at once from one IP address (error code \"busy\"); 0 = no limit."},
    {"max_calls_per_ip_per_min", INT(max_calls_per_ip_per_min), "20", 0, 1000000, NULL,
     "New calls per IP address per minute (error code \"rate_limited\"); 0 = no limit."},
    {"max_ws_connections", INT(max_ws_connections), "0", 0, 1000000, NULL,
     "WebSocket connections at once; 0 = as many as the file-descriptor limit leaves room "
     "for after the calls' own needs."},
    {"max_ws_per_ip", INT(max_ws_per_ip), "20", 0, 100000, NULL,
     "WebSocket connections at once from one IP address; 0 = no limit."},
    {"limit_loopback", BOOL(limit_loopback), "off", 0, 0, NULL,
     "Apply the per-address limits to loopback clients too (on|off). Off lets a local load "
     "test through. Behind a reverse proxy every caller shares the proxy's address: limit "
     "per caller at the proxy."},
    {"max_call_s", INT(max_call_s), "3600", 0, 604800, NULL,
     "Longest call in seconds, from its answer; a call that reaches it is ended with reason "
     "\"max duration\". 0 = no limit."},
    {"setup_timeout_ms", INT(setup_timeout_ms), "10000", 1000, 600000, NULL,
     "An answered call whose browser has not completed ICE and DTLS within this is ended "
     "(ice_timeout_ms then watches consent for the rest of the call)."},
    {"http_header_timeout_ms", INT(http_header_timeout_ms), "10000", 1000, 600000, NULL,
     "An HTTP connection must deliver a request's headers within this, or it is closed."},

    {"cluster_redis_url", TYPED(KEY_SECRET, cluster_redis_url), "", 0, 0, NULL,
     "Redis that the nodes of a cluster share (redis://[:password@]host[:port][/db]): each "
     "node registers there and calls are placed on the least-loaded node (docs/cluster.md). "
     "Empty = one node on its own. Prefer the environment (TINGSHUO_CLUSTER_REDIS_URL)."},
    {"node_id", STR(node_id), "", 0, 0, NULL,
     "This node's name in a cluster and in call records; empty = host name and HTTP port."},
    {"public_url", STR(public_url), "", 0, 0, NULL,
     "Where callers reach this node's signaling directly (ws:// or wss://.../ws), for calls "
     "placed on it by another node; empty = made from listen (or https_listen) and "
     "announce_address."},
    {"drain_timeout_s", INT(drain_timeout_s), "300", 0, 86400, NULL,
     "On SIGTERM or POST /api/drain: how long calls in progress may go on while the node "
     "takes no new ones, before it ends them and exits."},

    {"records", BOOL(records), "on", 0, 0, NULL,
     "Store every call: times, end reason, engines, settings, and each turn's transcript, "
     "reply and latency (on|off)."},
    {"database_url", TYPED(KEY_DB_URL, database_url), "", 0, 0, NULL,
     "Where records go: postgres://user:password@host:port/dbname (PostgreSQL); empty = "
     "SQLite in data_dir/tingshuo.db. Prefer the environment for a URL with a password."},
    {"records_queue", INT(records_queue), "20000", 100, 10000000, NULL,
     "Record events held while the database is slow or down; past this the oldest turn "
     "events are dropped (and counted), calls are never held up."},
    {"retention_days", INT(retention_days), "0", 0, 36500, NULL,
     "Calls older than this many days are deleted with their recordings, once a day; "
     "0 = keep forever."},
    {"record_calls", BOOL(record_calls), "off", 0, 0, NULL,
     "Record both sides of every call to Ogg Opus in data_dir/recordings (on|off)."},
    {"admin_token", TYPED(KEY_SECRET, admin_token), "", 0, 0, NULL,
     "Token that the history API, the history page and /metrics then require from every "
     "client, this machine's included (Bearer header or the page's sign-in); empty = they "
     "answer loopback clients only. At least 16 characters; prefer the environment "
     "(TINGSHUO_ADMIN_TOKEN)."},
    {"metrics_listen", TYPED(KEY_ADDR_OPT, metrics_listen), "", 0, 0, NULL,
     "Separate address (host:port) serving only /metrics, open to every client that reaches "
     "it; empty = /metrics on the main listener, under the API's access rule."},

    {"language", STR(language), "en", 0, 0, NULL,
     "Language of a call unless the page picks one (en, zh, de, fr, ja, ...): what ASR "
     "listens for, what the LLM answers in, which TTS voice speaks."},
    {"system_prompt", STR(system_prompt),
     "You are a helpful voice assistant on a phone call. Answer in one to three short, "
     "natural spoken sentences. No lists, no markdown, no emoji.",
     0, 0, NULL, "Instructions given to the LLM at the start of every conversation."},
    {"greeting", STR(greeting), "", 0, 0, NULL,
     "Said by the AI when a call connects; empty for none."},
    {"apology", STR(apology), "", 0, 0, NULL,
     "Said when a service fails; empty = a built-in sentence in the call's language."},
    {"history_turns", INT(history_turns), "10", 1, 1000, NULL,
     "Exchanges (a caller turn and its reply) the LLM sees; older ones are dropped."},
    {"inference_threads", INT(inference_threads), "0", 0, 256, NULL,
     "Threads for speech recognition and synthesis; 0 = one per core."},
    {"vad_threshold_db", INT(vad_threshold_db), "12", 3, 40, NULL,
     "Speech stands at least this many dB above the adaptive noise floor."},
    {"vad_onset_ms", INT(vad_onset_ms), "60", 20, 1000, NULL,
     "Voiced time before the start of speech is declared."},
    {"endpoint_ms", INT(endpoint_ms), "1200", 100, 5000, NULL,
     "The longest silence that ends the caller's turn: after a phrase left open (\"a table "
     "for ...\", \"and\", \"um\", digits being dictated). See docs/turns.md."},
    {"endpoint_min_ms", INT(endpoint_min_ms), "250", 100, 5000, NULL,
     "The shortest silence that ends the caller's turn: after a finished sentence or "
     "question. At most endpoint_ms."},
    {"speculate", TYPED(KEY_ENUM, speculate), "local", 0, 0, "off|local|all",
     "Prepare the reply in the caller's pauses, before their turn is over, and drop it "
     "unheard if they go on. off: never; local: with the engines that run here (no service "
     "is asked, nothing is billed); all: with services too (a dropped reply's tokens are "
     "still billed; llm_wasted in each latency event counts them)."},
    {"min_speech_ms", INT(min_speech_ms), "200", 0, 5000, NULL,
     "Voiced bursts shorter than this (clicks, coughs) are not a turn."},
    {"barge_in", BOOL(barge_in), "on", 0, 0, NULL,
     "Whether the caller can interrupt the AI by speaking (on|off)."},
    {"barge_in_min_ms", INT(barge_in_min_ms), "60", 20, 2000, NULL,
     "Voiced time while the AI speaks before its audio pauses for a possible interruption."},
    {"echo_cancel", BOOL(echo_cancel), "on", 0, 0, NULL,
     "Remove the AI's own voice, coming back through the caller's microphone, before "
     "speech detection and recognition (on|off)."},
    {"idle_prompt_ms", INT(idle_prompt_ms), "20000", 0, 3600000, NULL,
     "Silence from the caller after which the AI checks in once; 0 = never."},
    {"idle_hangup_ms", INT(idle_hangup_ms), "40000", 0, 3600000, NULL,
     "Silence from the caller after which the AI says goodbye and hangs up; 0 = never."},

    {"asr", TYPED(KEY_ENUM, asr), "pocketsphinx", 0, 0, "pocketsphinx|openai|scripted",
     "Speech recognition. pocketsphinx: embedded, English; openai: an OpenAI-compatible "
     "/audio/transcriptions service; scripted: a load-test engine that costs nothing."},
    {"asr_base_url", STR(asr_base_url), "https://api.openai.com/v1", 0, 0, NULL,
     "Base URL of the ASR service; /audio/transcriptions is appended."},
    {"asr_model", STR(asr_model), "whisper-1", 0, 0, NULL, "ASR service model."},
    {"asr_language", STR(asr_language), "", 0, 0, NULL,
     "Language hint for the ASR service (e.g. zh); empty = the call's language."},
    {"asr_prompt", STR(asr_prompt), "", 0, 0, NULL,
     "Prompt for the ASR service (names, jargon it should expect)."},
    {"asr_api_key_env", STR(asr_api_key_env), "OPENAI_API_KEY", 0, 0, NULL,
     "Environment variable holding the ASR service's API key."},
    {"llm", TYPED(KEY_ENUM, llm), "local", 0, 0, "local|openai|anthropic|fixed",
     "Dialog engine. local: an offline rule-based assistant; openai: OpenAI-compatible chat "
     "completions; anthropic: Anthropic Messages; fixed: a load-test engine."},
    {"llm_base_url", STR(llm_base_url), "", 0, 0, NULL,
     "Base URL of the LLM service (/chat/completions or /messages is appended); empty = "
     "https://api.openai.com/v1 or https://api.anthropic.com/v1."},
    {"llm_model", STR(llm_model), "", 0, 0, NULL,
     "LLM model; empty = gpt-4o-mini or claude-3-5-haiku-latest."},
    {"llm_api_key_env", STR(llm_api_key_env), "", 0, 0, NULL,
     "Environment variable holding the LLM service's API key; empty = OPENAI_API_KEY or "
     "ANTHROPIC_API_KEY."},
    {"llm_max_tokens", INT(llm_max_tokens), "150", 1, 100000, NULL,
     "Longest reply, in tokens."},
    {"llm_temperature", DBL(llm_temperature), "0.7", 0, 2, NULL, "Sampling temperature."},
    {"tts", TYPED(KEY_ENUM, tts), "flite", 0, 0, "flite|espeak-ng|openai|elevenlabs|azure|tone",
     "Speech synthesis. flite: embedded, English (other languages go to espeak-ng); "
     "espeak-ng: embedded, every language; openai, elevenlabs, azure: services; tone: a "
     "load-test engine."},
    {"tts_base_url", STR(tts_base_url), "", 0, 0, NULL,
     "Base URL of the TTS service; empty = the service's public one."},
    {"tts_model", STR(tts_model), "", 0, 0, NULL, "TTS service model."},
    {"tts_voice", STR(tts_voice), "", 0, 0, NULL,
     "Voice: flite slt|kal|awb|rms; an espeak-ng voice name; the service's voice id. Empty = "
     "the backend's default."},
    {"tts_api_key_env", STR(tts_api_key_env), "", 0, 0, NULL,
     "Environment variable holding the TTS service's API key; empty = the service's usual "
     "one (OPENAI_API_KEY, ELEVENLABS_API_KEY, AZURE_SPEECH_KEY)."},
    {"tts_rate", INT(tts_rate), "100", 50, 300, NULL, "Speaking rate, percent of normal."},
    {"tools_file", STR(tools_file), "", 0, 0, NULL,
     "JSON file declaring the tools the LLM may call during a call: webhooks and built-ins "
     "(docs/tools.md); empty = no tools. Checked at start."},
    {"mcp_servers", STR(mcp_servers), "", 0, 0, NULL,
     "Model Context Protocol servers (Streamable HTTP URLs, comma separated) whose tools the "
     "LLM may call too; empty = none."},
    {"tools_secret", TYPED(KEY_SECRET, tools_secret), "", 0, 0, NULL,
     "Key that signs every webhook request (X-Tingshuo-Signature, HMAC-SHA256) so the "
     "receiver can check it came from this server. Prefer the environment "
     "(TINGSHUO_TOOLS_SECRET); empty = webhook requests are not signed."},
    {"max_tool_rounds", INT(max_tool_rounds), "3", 0, 20, NULL,
     "Rounds of tool calls the LLM may make for one reply before it must answer; 0 = tools "
     "are not offered."},
    {"tool_timeout_ms", INT(tool_timeout_ms), "5000", 100, 600000, NULL,
     "Longest wait for a tool's result unless the tool sets its own timeout_ms."},
    {"tool_filler_ms", INT(tool_filler_ms), "700", 0, 10000, NULL,
     "When a tool is running and nothing has been said this long after the caller's turn "
     "ended, the AI says the tool's say_while_running phrase (or a short default); 0 = never."},
    {"tts_cache_mb", INT(tts_cache_mb), "64", 0, 65536, NULL,
     "Synthesised speech kept in memory, in MB, least recently used dropped first; phrases "
     "said again (greetings, apologies, repeated answers) then play with no synthesis. 0 = "
     "no memory cache."},
    {"tts_cache_disk_mb", INT(tts_cache_disk_mb), "256", 0, 1048576, NULL,
     "Synthesised speech kept on disk in data_dir/tts-cache, in MB, surviving restarts; "
     "0 = no disk cache."},
    {"price_llm_input", DBL(price_llm_input), "0", 0, 1000000, NULL,
     "What the LLM service charges per million input tokens not read from its prompt "
     "cache, in price_currency; 0 = not priced. With the other price_* keys it gives each "
     "call's estimated cost."},
    {"price_llm_cached", DBL(price_llm_cached), "0", 0, 1000000, NULL,
     "Per million input tokens read from the LLM service's prompt cache."},
    {"price_llm_output", DBL(price_llm_output), "0", 0, 1000000, NULL,
     "Per million output tokens."},
    {"price_tts", DBL(price_tts), "0", 0, 1000000, NULL,
     "Per million characters synthesised by the TTS service (cache hits cost nothing)."},
    {"price_asr", DBL(price_asr), "0", 0, 1000000, NULL,
     "Per minute of audio recognised by the ASR service."},
    {"price_currency", STR(price_currency), "USD", 0, 0, NULL,
     "Currency the price_* keys are in, shown with each call's cost."},
    {"http_connect_timeout_ms", INT(http_connect_timeout_ms), "3000", 100, 600000, NULL,
     "AI services: longest wait for a connection."},
    {"http_first_byte_timeout_ms", INT(http_first_byte_timeout_ms), "10000", 100, 600000, NULL,
     "AI services: longest wait for the first byte of a response."},
    {"http_total_timeout_ms", INT(http_total_timeout_ms), "60000", 100, 3600000, NULL,
     "AI services: longest time for one whole request."},
};

#define NKEYS (sizeof keys / sizeof keys[0])

static const struct key *find_key(const char *name) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(keys[i].name, name) == 0) return &keys[i];
  return NULL;
}

int config_has_key(const char *key) { return find_key(key) != NULL; }

static int enum_has(const char *choices, const char *value) {
  size_t n = strlen(value);
  for (const char *p = choices; *p;) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && strncmp(p, value, n) == 0) return 1;
    p += len + (bar ? 1 : 0);
  }
  return 0;
}

static int is_ip(const char *s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* host:port with host an IPv4 address, [IPv6] or a DNS name. */
static int check_addr(const char *v, const char **why) {
  const char *colon = strrchr(v, ':');
  if (!colon || colon == v) return *why = "expected host:port, e.g. 127.0.0.1:8080", -EINVAL;
  char host[256];
  size_t hlen = (size_t)(colon - v);
  if (hlen >= sizeof host) return *why = "host is too long", -EINVAL;
  memcpy(host, v, hlen);
  host[hlen] = '\0';
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
    return *why = "port must be a number from 0 to 65535", -EINVAL;
  if (host[0] == '[') {
    if (hlen < 3 || host[hlen - 1] != ']') return *why = "bad [IPv6] address", -EINVAL;
    host[hlen - 1] = '\0';
    unsigned char b[16];
    if (inet_pton(AF_INET6, host + 1, b) != 1) return *why = "bad IPv6 address", -EINVAL;
    return 0;
  }
  if (strchr(host, ':')) return *why = "write an IPv6 address in brackets: [::1]:8080", -EINVAL;
  for (const char *p = host; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
      return *why = "bad host name", -EINVAL;
  return 0;
}

static int check_ip_list(const char *v, const char **why) {
  char item[256];
  const char *p = v;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    while (len && isspace((unsigned char)*p)) p++, len--;
    while (len && isspace((unsigned char)p[len - 1])) len--;
    if (len == 0 || len >= sizeof item) return *why = "expected IP addresses separated by commas", -EINVAL;
    memcpy(item, p, len);
    item[len] = '\0';
    if (!is_ip(item)) return *why = "not an IP address", -EINVAL;
    p = comma ? comma + 1 : p + strlen(p);
  }
  return 0;
}

/* Validates `value` for `k`; on success stores it. */
static int apply(struct config *cfg, const struct key *k, const char *value, const char **why) {
  char *field = (char *)cfg + k->offset;
  int rc = 0;
  switch (k->type) {
  case KEY_INT: {
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (errno || end == value || *end) return *why = "expected a whole number", -EINVAL;
    if (n < k->min || n > k->max) return *why = "out of range", -ERANGE;
    *(int *)field = (int)n;
    return 0;
  }
  case KEY_DOUBLE: {
    char *end;
    errno = 0;
    double d = strtod(value, &end);
    if (errno || end == value || *end) return *why = "expected a number", -EINVAL;
    if (!(d >= (double)k->min && d <= (double)k->max)) return *why = "out of range", -ERANGE; /* NaN too */
    *(double *)field = d;
    return 0;
  }
  case KEY_BOOL:
    if (!strcmp(value, "on") || !strcmp(value, "true") || !strcmp(value, "1")) *(int *)field = 1;
    else if (!strcmp(value, "off") || !strcmp(value, "false") || !strcmp(value, "0")) *(int *)field = 0;
    else return *why = "expected on or off", -EINVAL;
    return 0;
  case KEY_ENUM:
    if (!enum_has(k->choices, value)) return *why = "not one of the allowed values", -EINVAL;
    break;
  case KEY_ADDR:
    rc = check_addr(value, why);
    break;
  case KEY_IP:
    if (!is_ip(value)) return *why = "expected an IPv4 or IPv6 address", -EINVAL;
    break;
  case KEY_ADDR_OPT:
    rc = *value ? check_addr(value, why) : 0;
    break;
  case KEY_ADDR_LIST:
    rc = check_ip_list(value, why);
    break;
  case KEY_DB_URL:
    if (*value && strncmp(value, "postgres://", 11) != 0 && strncmp(value, "postgresql://", 13) != 0)
      return *why = "expected postgres://... or empty for SQLite", -EINVAL;
    break;
  case KEY_SECRET:
    if (*value && strlen(value) < 16) return *why = "too short: use at least 16 characters", -EINVAL;
    break;
  case KEY_STRING:
    break;
  }
  if (rc) return rc;
  if (strlen(value) >= k->size) return *why = "too long", -ENAMETOOLONG;
  memcpy(field, value, strlen(value) + 1);
  return 0;
}

static void describe_choices(const struct key *k, char *out, size_t cap) {
  out[0] = '\0';
  if (k->type == KEY_ENUM) snprintf(out, cap, " (one of: %s)", k->choices);
  else if (k->type == KEY_INT || k->type == KEY_DOUBLE)
    snprintf(out, cap, " (from %ld to %ld)", k->min, k->max);
  else if (k->type == KEY_BOOL) snprintf(out, cap, " (on or off)");
}

int config_set(struct config *cfg, const char *key, const char *value, const char *origin,
               char *err, size_t errlen) {
  const struct key *k = find_key(key);
  if (!k) {
    snprintf(err, errlen, "%s: unknown key \"%s\" (tingshuo --help lists every key)", origin, key);
    return -ENOENT;
  }
  const char *why = "bad value";
  int rc = apply(cfg, k, value, &why);
  if (rc) {
    char extra[160];
    describe_choices(k, extra, sizeof extra);
    /* A secret, or a URL that may hold a password, is never repeated in a message. */
    int hide = k->type == KEY_SECRET || k->type == KEY_DB_URL;
    snprintf(err, errlen, "%s: bad value \"%s\" for key \"%s\": %s%s", origin,
             hide ? "(hidden)" : value, key, why, extra);
  }
  return rc;
}

void config_defaults(struct config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < NKEYS; i++) {
    const char *why;
    int rc = apply(cfg, &keys[i], keys[i].def, &why);
    (void)rc; /* defaults are checked by the unit tests */
  }
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

/* Removes surrounding double quotes, handling \" \\ \n; -EINVAL if unbalanced. */
static int unquote(char *v) {
  size_t n = strlen(v);
  if (n == 0 || v[0] != '"') return 0;
  if (n < 2 || v[n - 1] != '"') return -EINVAL;
  char *out = v;
  for (size_t i = 1; i < n - 1; i++) {
    if (v[i] == '\\' && i + 1 < n - 1) {
      i++;
      *out++ = v[i] == 'n' ? '\n' : v[i];
    } else if (v[i] == '"') {
      return -EINVAL;
    } else {
      *out++ = v[i];
    }
  }
  *out = '\0';
  return 0;
}

static int parse_line(struct config *cfg, char *line, const char *path, int lineno, char *err,
                      size_t errlen) {
  char *s = trim(line);
  if (*s == '\0' || *s == '#') return 0;
  char origin[1200];
  snprintf(origin, sizeof origin, "%s:%d", path, lineno);
  char *eq = strchr(s, '=');
  if (!eq) {
    snprintf(err, errlen, "%s: expected \"key = value\", got \"%.80s\"", origin, s);
    return -EINVAL;
  }
  *eq = '\0';
  char *key = trim(s), *value = trim(eq + 1);
  if (unquote(value)) {
    snprintf(err, errlen, "%s: unbalanced quotes in the value of \"%s\"", origin, key);
    return -EINVAL;
  }
  return config_set(cfg, key, value, origin, err, errlen);
}

int config_load_file(struct config *cfg, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "cannot open config file %s: %s", path, strerror(errno));
    return -errno;
  }
  /* Validate into a copy so that a bad file changes nothing. */
  struct config tmp = *cfg;
  char line[8192];
  int lineno = 0, rc = 0;
  while (rc == 0 && fgets(line, sizeof line, f)) {
    lineno++;
    if (!strchr(line, '\n') && !feof(f)) {
      snprintf(err, errlen, "%s:%d: line longer than %zu bytes", path, lineno, sizeof line - 2);
      rc = -E2BIG;
      break;
    }
    rc = parse_line(&tmp, line, path, lineno, err, errlen);
  }
  fclose(f);
  if (rc == 0) *cfg = tmp;
  return rc;
}

/* TINGSHUO_FOO_BAR=... -> foo_bar; 0 if `var` is not one of ours or has no '=' (execve
 * allows such entries, and the caller takes the value after the '='). */
static int env_to_key(const char *var, char *key, size_t cap) {
  static const char prefix[] = "TINGSHUO_";
  if (strncmp(var, prefix, sizeof prefix - 1) != 0) return 0;
  const char *name = var + sizeof prefix - 1;
  const char *eq = strchr(name, '=');
  if (!eq) return 0;
  size_t len = (size_t)(eq - name);
  if (len == 0 || len >= cap) return 0;
  for (size_t i = 0; i < len; i++) key[i] = (char)tolower((unsigned char)name[i]);
  key[len] = '\0';
  return 1;
}

int config_load_env(struct config *cfg, char *const *envp, char *err, size_t errlen) {
  struct config tmp = *cfg;
  for (; envp && *envp; envp++) {
    char key[128];
    if (!env_to_key(*envp, key, sizeof key)) continue;
    const char *eq = strchr(*envp, '=');
    char origin[160];
    snprintf(origin, sizeof origin, "environment variable %.*s", (int)(eq - *envp), *envp);
    int rc = config_set(&tmp, key, eq + 1, origin, err, errlen);
    if (rc) return rc;
  }
  *cfg = tmp;
  return 0;
}

static void flag_name(const char *key, char *out, size_t cap) {
  size_t i = 0;
  for (; key[i] && i + 1 < cap; i++) out[i] = key[i] == '_' ? '-' : key[i];
  out[i] = '\0';
}

void config_print_flags(FILE *out) {
  for (size_t i = 0; i < NKEYS; i++) {
    char flag[64], extra[160];
    flag_name(keys[i].name, flag, sizeof flag);
    describe_choices(&keys[i], extra, sizeof extra);
    fprintf(out, "  --%-20s %s%s\n  %-22s   default: \"%s\"\n", flag, keys[i].help, extra, "",
            keys[i].def);
  }
}

void config_print_example(FILE *out) {
  fprintf(out, "# tingshuo configuration. Every key, its default and what it does.\n"
               "# Syntax: key = value; lines starting with # are comments; a value may be\n"
               "# put in double quotes. Each key can also be set by the environment variable\n"
               "# TINGSHUO_<KEY> (upper case) or the flag --<key-with-dashes>; flags win over\n"
               "# the environment, which wins over this file. API keys are never put here:\n"
               "# they are read from the environment only.\n");
  for (size_t i = 0; i < NKEYS; i++) {
    char extra[160];
    describe_choices(&keys[i], extra, sizeof extra);
    fprintf(out, "\n# %s%s\n%s = %s%s%s\n", keys[i].help, extra, keys[i].name,
            keys[i].def[0] ? "" : "\"", keys[i].def, keys[i].def[0] ? "" : "\"");
  }
}
