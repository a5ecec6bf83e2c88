/*
 * config: every setting of the server, from defaults, a file, the environment
 * and the command line, in that order of precedence (later wins).
 *
 * The set of keys is one table in config.c; the file syntax, the environment
 * names (key `foo_bar` -> TINGSHUO_FOO_BAR) and the command-line flags
 * (`--foo-bar VALUE`) all derive from it.
 */
#ifndef TS_CORE_CONFIG_H
#define TS_CORE_CONFIG_H

#include <stddef.h>
#include <stdio.h>

struct config {
  char listen[256];        /* HTTP address, host:port */
  char https_listen[256];  /* HTTPS address, host:port, empty = off */
  char tls_cert[1024];     /* PEM certificate for HTTPS, empty = self-signed */
  char tls_key[1024];      /* PEM private key for HTTPS */
  char data_dir[1024];     /* state: generated certificate, database */
  char web_root[1024];     /* the browser client's files */
  char log_level[16];
  char log_format[16];     /* text | json */
  char agent[32];          /* what answers a call */
  int media_workers;       /* 0 = one per core */
  char media_address[256]; /* UDP bind address for media */
  int media_port;          /* first worker's UDP port; worker i uses +i; 0 = any */
  char announce_address[1024]; /* addresses put in SDP candidates, comma separated */
  int max_calls;
  int ice_timeout_ms;      /* no consent checks for this long ends a call */
  int resume_timeout_ms;   /* a call whose WebSocket dropped waits this long */

  /* Who may call, and how much. */
  char call_auth[16];      /* auto | none | token */
  char call_secret[256];   /* HMAC key for call tokens (TINGSHUO_CALL_SECRET) */
  char allowed_origins[1024]; /* WebSocket Origins accepted besides our own, comma separated */
  int max_calls_per_ip;    /* calls at once from one address; 0 = no limit */
  int max_calls_per_ip_per_min; /* new calls per address per minute; 0 = no limit */
  int max_ws_connections;  /* WebSocket connections at once; 0 = derived from the fd limit */
  int max_ws_per_ip;       /* WebSocket connections at once from one address; 0 = no limit */
  int limit_loopback;      /* 1 = the per-address limits apply to loopback clients too */
  int max_call_s;          /* longest call; 0 = no limit */
  int setup_timeout_ms;    /* an answered call must finish ICE and DTLS within this */
  int http_header_timeout_ms; /* a request's headers must arrive within this */

  /* Records, recordings, access to them, metrics. */
  char cluster_redis_url[1024]; /* redis://... shared by a cluster's nodes; empty = alone */
  char node_id[128];       /* this node's name; empty = host name and port */
  char public_url[1024];   /* callers reach this node's signaling here; empty = derived */
  int drain_timeout_s;     /* calls may go on this long after SIGTERM or a drain request */

  int records;             /* 1 = every call is stored */
  char database_url[1024]; /* postgres://... ; empty = SQLite in data_dir */
  int records_queue;       /* record events waiting for the database, at most */
  int retention_days;      /* calls older than this are purged daily; 0 = never */
  int record_calls;        /* 1 = both sides of every call to Ogg Opus */
  char admin_token[256];   /* lets remote clients reach the API; empty = loopback only */
  char metrics_listen[256]; /* separate address for /metrics, host:port; empty = none */

  /* The voice agent. */
  char language[16];       /* the call's language unless the page picks one: en, zh, ... */
  char system_prompt[4096];
  char greeting[1024];     /* spoken when the call connects; empty = none */
  char apology[1024];      /* spoken when a service fails; empty = the built-in one */
  int history_turns;       /* exchanges kept for the LLM */
  int inference_threads;   /* 0 = one per core */
  int vad_threshold_db;    /* speech stands this far above the noise floor */
  int vad_onset_ms;        /* voiced time before speech onset is declared */
  int endpoint_ms;         /* longest silence that ends a turn (after a phrase left open) */
  int endpoint_min_ms;     /* shortest (after a finished sentence); docs/turns.md */
  char speculate[8];       /* off|local|all: which engines may start a reply before the turn ends */
  int min_speech_ms;       /* shorter voiced bursts are clicks and coughs */
  int barge_in;            /* 1 = the caller may interrupt */
  int barge_in_min_ms;     /* voiced time while the AI speaks before it pauses */
  int echo_cancel;         /* 1 = remove the AI's own voice from the caller's audio */
  int idle_prompt_ms;      /* silence before "are you still there?"; 0 = never */
  int idle_hangup_ms;      /* silence before hanging up; 0 = never */

  /* Engines and services. */
  char asr[32], asr_base_url[1024], asr_model[128], asr_language[16], asr_prompt[1024],
      asr_api_key_env[128];
  char llm[32], llm_base_url[1024], llm_model[128], llm_api_key_env[128];
  int llm_max_tokens;
  double llm_temperature;
  char tts[32], tts_base_url[1024], tts_model[128], tts_voice[128], tts_api_key_env[128];
  int tts_rate;            /* speaking rate, percent of normal */
  int http_connect_timeout_ms, http_first_byte_timeout_ms, http_total_timeout_ms;
  char tools_file[1024];   /* tools the LLM may call (docs/tools.md); empty = none */
  char mcp_servers[2048];  /* MCP server URLs, comma separated */
  char tools_secret[256];  /* HMAC key for webhook signatures (TINGSHUO_TOOLS_SECRET) */
  int max_tool_rounds;     /* tool rounds per reply; 0 = no tools offered */
  int tool_timeout_ms;     /* a tool's result, at most this late (unless it sets its own) */
  int tool_filler_ms;      /* silence after the turn before a running tool's phrase; 0 = never */
  int tts_cache_mb;        /* memory TTS cache bound; 0 = none */
  int tts_cache_disk_mb;   /* disk TTS cache bound (data_dir/tts-cache); 0 = none */

  /* What the services charge, for each call's estimated cost; 0 = not priced. */
  double price_llm_input;  /* per million uncached input tokens */
  double price_llm_cached; /* per million input tokens read from the prompt cache */
  double price_llm_output; /* per million output tokens */
  double price_tts;        /* per million characters synthesised */
  double price_asr;        /* per minute of audio recognised */
  char price_currency[16];
};

/* Fills in every default. */
void config_defaults(struct config *cfg);

/*
 * Each loader returns 0 or a negative errno; on error `err` holds a message
 * that names the key, the value and where it came from (file and line, the
 * environment variable, or the flag).
 */
int config_load_file(struct config *cfg, const char *path, char *err, size_t errlen);
int config_load_env(struct config *cfg, char *const *envp, char *err, size_t errlen);
int config_set(struct config *cfg, const char *key, const char *value, const char *origin,
               char *err, size_t errlen);

/* True when `key` names a configuration key. */
int config_has_key(const char *key);

/* Writes "  --flag-name VALUE   help (default: x)" lines for --help. */
void config_print_flags(FILE *out);

/* Writes the annotated example configuration (tingshuo.conf.example). */
void config_print_example(FILE *out);

#endif
