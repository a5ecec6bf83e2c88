/*
 * The voice agent: one call's turn manager.
 *
 * Every 20 ms the media tick hands it the caller's frame (hear) and takes
 * the frame to send (speak). Between ticks, engine results arrive as
 * closures on the same worker thread, so the whole agent is single-threaded
 * and needs no lock.
 *
 * The caller's audio arrives at 16 kHz (Opus decodes straight to it) ->
 * echo canceller (the AI's own voice, which a speakerphone feeds back, is
 * removed using what we sent as the reference) -> VAD. Speech onset starts a recognition session, fed
 * with a little audio from before the onset so the first syllable is not
 * lost; the end of speech finishes it; the final text becomes the user's
 * turn. The reply streams: LLM tokens go through the sentence chunker, each
 * sentence is synthesised in order, and audio is queued for the tick as it
 * arrives. The host asks for each frame a tick before it is due; a reply's
 * first frame is asked for again at once (the host's kick, then
 * voice_agent_speak_again) and replaces the silence, so no turn waits up
 * to 20 ms for the pacing grid.
 *
 * States: listening -> user_speaking -> thinking -> speaking -> listening.
 *
 * Barge-in is two-step, because the agent cannot know in 100 ms whether
 * the caller means to interrupt. At speech onset during a reply the AI's
 * audio pauses at once (that is the 100 ms bound) and generation goes on.
 * When the caller's words are known: a real interruption cancels the
 * reply, keeps in the history only what was played, marked interrupted,
 * and answers the new turn; a burst that was too short, carried no words
 * or was a backchannel ("uh-huh", "嗯") resumes the reply where it paused.
 * Speech while the agent is still thinking (before any audio) continues the
 * caller's turn: the pending reply is dropped and the words are joined.
 *
 * Latency figures (DESIGN.md, "Latency, defined once") are stamped on the
 * monotonic clock and sent once per turn, when its first frame goes out.
 * They, and the usage, stay here rather than with the reply: a turn's
 * figures start before its reply does and may outlive a reply dropped unsaid.
 *
 * The reply in progress is an object of its own (reply.h), so that whatever
 * ends it (played out, interrupted, dropped) releases its engine jobs with
 * it; "a reply is active" is va->reply being set.
 */
#include "agent/voice.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/chunker.h"
#include "agent/history.h"
#include "agent/playout.h"
#include "agent/reply.h"
#include "agent/text.h"
#include "agent/toolrun.h"
#include "agent/turn.h"
#include "tools/tools.h"
#include "audio/aec.h"
#include "audio/resample.h"
#include "audio/vad.h"
#include "core/log.h"
#include "core/redact.h"

#define FRAME16 320            /* 20 ms at 16 kHz */
#define PREROLL_FRAMES 20      /* 400 ms kept before the onset */
#define PREROLL_EXTRA_MS 100   /* fed to ASR from before the first voiced frame */
#define ASR_TAIL_MS 200        /* of each pause (and of the endpoint's silence) fed to ASR */
#define ASR_RESUME_MS 100      /* fed from before speech that resumes after a longer pause */
#define LEVEL_EVERY 10         /* frames between `level` events */
#define MAX_TEXT REPLY_MAX_TEXT /* a text's bytes with its NUL, the stack buffers' size */
#define AI_LAST_TEXT 512       /* the same, of the end of what the AI said */
#define AEC_MAX_DELAY_MS 600
#define JUDGE_AHEAD_MS 100     /* a pause is judged this long before endpoint_min_ms, or halfway */
#define TTS_LEAD_MS 500        /* synthesis keeps this much ahead of playback, plus its own wait */

enum vstate { ST_LISTENING, ST_USER, ST_THINKING, ST_SPEAKING };
static const char *const state_names[] = {"listening", "user_speaking", "thinking", "speaking"};

struct stamps {
  double last_voiced, end, final, first_token, first_sentence, tts_req, first_audio, first_sent;
  double asr_req;               /* the words were asked for before the turn ended (0: at its end) */
  int speculated;               /* the reply was being made before the turn ended */
  double onset, ai_stopped;     /* onset: when the VAD declared it; the AI's first withheld frame */
  int onset_lag;                /* how long before that the caller's first sound was */
  int tts_cached;               /* the reply's first sentence came from the TTS cache */
};

/* What the services were asked to do since the last `usage` event, in the units they bill. */
struct usage {
  struct llm_usage llm;
  long long tts_chars, tts_chars_cached, asr_samples;
};

struct voice_agent {
  const struct config *cfg;
  struct engines *eng;
  struct mailbox *home;
  struct agent_host host;
  char call_id[40];
  char language[16], voice[128];
  /* The prompt and the greeting are the configuration's unless the call brought its own,
   * then a copy the agent owns: most calls use the configured ones, which a copy in every
   * call would only repeat. The apology is always the configuration's (phrase_apology). */
  const char *system_prompt, *greeting;
  char *prompt_copy, *greeting_copy;
  int rate;

  enum vstate state;
  struct resampler *down_out; /* sent audio 48 -> 16 kHz, the echo reference; made on need */
  struct aec *aec;
  struct vad *vad;
  int16_t preroll[PREROLL_FRAMES][FRAME16];
  float pitch_hz[PREROLL_FRAMES]; /* the VAD's pitch of each frame in the ring, 0: none */
  int preroll_head, preroll_n;
  int last_voiced_ms;

  /*
   * The texts below may hold up to MAX_TEXT - 1 bytes, but are mostly a few words or
   * nothing: on the heap at their size (text.h) they take a few hundred bytes a call
   * instead of 17 KB. A write that finds no memory leaves the old text (each use says
   * what follows), and one that empties a text gives its block back.
   */
  struct asr_session *asr;
  struct text user_text;    /* the caller's turn being answered */
  struct text heard_before; /* words of this turn before a pause that continued it */
  int same_turn;            /* and the turn had its number: its reply was dropped unsaid */

  /* The pause being judged (docs/turns.md): its words are asked for early, by finishing the
   * live session there; a new live one starts if the caller goes on. A session's callbacks
   * carry one of two contexts, which say which of the two roles it has now. */
  struct asr_ctx {
    struct voice_agent *va;
    int early;
  } ctx[2];
  int live_ctx;
  struct asr_session *asr_early;
  struct text partial;        /* the live session's latest words */
  struct text early_text;     /* the turn's words up to this pause, once the early session ends */
  int early_done;             /* early_text holds them */
  int pause_judged;           /* this pause has been looked at */
  enum turn_pitch pitch;      /* of the words before it */
  int llm_wasted;             /* replies started early for this turn and dropped */
  struct text ai_last;        /* what the AI said last: a question for digits expects them */

  struct reply *reply;     /* the reply in progress, NULL when there is none */
  int answered;            /* the last reply answered a turn: usage sent after it is that turn's */
  struct chunker *chunker; /* these two serve every reply of the call, one at a time */
  struct playout *po;
  int spoke; /* the last frame spoken (and given to the echo reference) carried audio */
  struct history *hist;

  struct stamps t;
  struct usage use;
  int turn;
  int idle_ms, idle_prompted;
  struct toolrun *tools;
  int level_count;
  char end_reason[16];
  int ended;
};

static double now_ms(void) { return (double)uv_hrtime() / 1e6; }

/* Whether the reply in progress (else the last one) answers a turn of the caller's. */
static int answers_turn(const struct voice_agent *va) {
  return va->reply ? va->reply->is_turn : va->answered;
}

/* --- events ----------------------------------------------------------------------- */

static void emit(struct voice_agent *va, json_t *ev) {
  if (!ev) return;
  json_object_set_new(ev, "call_id", json_string(va->call_id));
  /* Figures are rounded to 0.1; ten digits print them as such, not as 602.10000000000002. */
  char *text = json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(10));
  json_decref(ev);
  if (text) va->host.event(va->host.user, text);
}

static void set_state(struct voice_agent *va, enum vstate s) {
  if (va->state == s) return;
  va->state = s;
  emit(va, json_pack("{s:s,s:s}", "type", "state", "state", state_names[s]));
}

/*
 * An engine's error text is written by a service we do not control and can
 * hold a key it echoed or an internal address: the caller gets a fixed
 * sentence and an error id, the log gets the detail under the same id, with
 * every configured secret masked (core/redact.h).
 */
static const char *unavailable(const char *engine) {
  if (strcmp(engine, "asr") == 0) return "The speech recognition service is unavailable";
  if (strcmp(engine, "llm") == 0) return "The language model service is unavailable";
  return "The speech synthesis service is unavailable";
}

static void emit_error(struct voice_agent *va, const char *engine, const char *message) {
  char id[REDACT_ERROR_ID_SIZE], detail[768];
  redact_error_id(id);
  redact_text(engines_redact(va->eng), message, detail, sizeof detail);
  log_call_warn("agent", va->call_id, "%s error %s: %s", engine, id, detail);
  emit(va, json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", "error", "code", "engine", "engine", engine,
                     "message", unavailable(engine), "error_id", id));
}

static void put_ms(json_t *ev, const char *name, double from, double to) {
  if (from > 0 && to >= from) json_object_set_new(ev, name, json_real(round((to - from) * 10) / 10));
}

static void emit_latency(struct voice_agent *va, int with_barge_in) {
  const struct stamps *t = &va->t;
  json_t *ev = json_pack("{s:s,s:i}", "type", "latency", "turn", answers_turn(va) ? va->turn : 0);
  if (!ev) return;
  put_ms(ev, "endpoint_ms", t->last_voiced, t->end);
  put_ms(ev, "asr_ms", t->asr_req > 0 ? t->asr_req : t->end, t->final);
  put_ms(ev, "llm_first_token_ms", t->final, t->first_token);
  put_ms(ev, "llm_first_sentence_ms", t->final, t->first_sentence);
  put_ms(ev, "tts_first_audio_ms", t->tts_req, t->first_audio);
  if (t->tts_req > 0) json_object_set_new(ev, "tts_cached", json_boolean(t->tts_cached));
  put_ms(ev, "voice_to_voice_ms", t->last_voiced, t->first_sent);
  if (t->last_voiced > 0 && t->first_sent > 0 && t->first_audio > 0) {
    /* Made early, the engines' work overlapped the pause: what the server added is then
     * the time from the later of the turn's end and the first audio to that audio sent. */
    double engines = (t->end - t->last_voiced) + (t->final - t->end) +
                     (t->first_sentence - t->final) + (t->first_audio - t->tts_req);
    double overhead = t->speculated ? t->first_sent - fmax(t->end, t->first_audio)
                                    : (t->first_sent - t->last_voiced) - engines;
    json_object_set_new(ev, "overhead_ms", json_real(round(overhead * 10) / 10));
  }
  if (answers_turn(va) && t->last_voiced > 0) {
    json_object_set_new(ev, "speculated", json_boolean(t->speculated));
    json_object_set_new(ev, "llm_wasted", json_integer(va->llm_wasted));
    va->llm_wasted = 0;
  }
  if (with_barge_in) {
    put_ms(ev, "barge_in_ms", t->onset, t->ai_stopped);
    json_object_set_new(ev, "onset_lag_ms", json_integer(t->onset_lag));
  }
  emit(va, ev);
}

/* `turn` says which caller turn the reply answers; 0 for a greeting or prompt. */
static void emit_reply(struct voice_agent *va, const char *text, int interrupted) {
  emit(va, json_pack("{s:s,s:s,s:b,s:i}", "type", "reply", "text", text, "interrupted",
                     interrupted, "turn", answers_turn(va) ? va->turn : 0));
}

/*
 * Usage goes out when a reply ends, however it ends, with the turn it
 * answered (0 for a greeting or prompt): the caller's audio that led to it
 * and what the LLM and TTS were asked for on its behalf. A reply dropped
 * before it was spoken still cost what it cost. The sum over a call's
 * events is the call's usage.
 */
static void emit_usage(struct voice_agent *va) {
  const struct usage *u = &va->use;
  if (!u->llm.input_tokens && !u->llm.output_tokens && !u->tts_chars && !u->tts_chars_cached &&
      !u->asr_samples)
    return;
  json_t *ev = json_pack("{s:s,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "type", "usage", "turn",
                         answers_turn(va) ? va->turn : 0, "llm_input_tokens",
                         (json_int_t)u->llm.input_tokens, "llm_cached_tokens",
                         (json_int_t)u->llm.cached_tokens, "llm_cache_write_tokens",
                         (json_int_t)u->llm.cache_write_tokens, "llm_output_tokens",
                         (json_int_t)u->llm.output_tokens, "tts_chars", (json_int_t)u->tts_chars,
                         "tts_chars_cached", (json_int_t)u->tts_chars_cached, "asr_seconds",
                         round((double)u->asr_samples / (VOICE_IN_RATE / 10)) / 10);
  memset(&va->use, 0, sizeof va->use);
  emit(va, ev);
}

static void feed_asr(struct voice_agent *va, const int16_t *pcm) {
  va->use.asr_samples += FRAME16;
  asr_feed(va->asr, pcm, FRAME16);
}

static long long utf8_chars(const char *s) {
  long long n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

/* --- language-dependent phrases ---------------------------------------------------- */

static int is_zh(const char *language) { return strncmp(language, "zh", 2) == 0; }

static const char *apology_in(const char *language, const char *configured) {
  if (configured[0]) return configured;
  return is_zh(language) ? "抱歉，我现在无法回复，请稍后再试。"
                         : "Sorry, I can't answer right now. Please try again in a moment.";
}

static const char *still_there_in(const char *language) {
  return is_zh(language) ? "你还在吗？" : "Are you still there?";
}

static const char *idle_bye_in(const char *language) {
  return is_zh(language) ? "好像没有声音了，我先挂断了，再见！"
                         : "I haven't heard anything for a while, so I'll hang up now. Goodbye!";
}

static const char *phrase_apology(const struct voice_agent *va) {
  return apology_in(va->language, va->cfg->apology);
}
static const char *phrase_still_there(const struct voice_agent *va) {
  return still_there_in(va->language);
}
static const char *phrase_idle_bye(const struct voice_agent *va) { return idle_bye_in(va->language); }

/*
 * The phrases a call may hear without an LLM reply are put in the TTS cache
 * ahead of time, sentence by sentence exactly as a reply speaks them (the
 * cache is keyed by sentence), so they play with no synthesis delay.
 */
struct warm {
  struct engines *eng;
  struct tts_params p;
};

static void warm_sentence(void *user, const char *sentence) {
  struct warm *w = user;
  w->p.text = sentence;
  engines_tts_warm(w->eng, &w->p);
}

static void warm_text(struct chunker *ch, struct warm *w, const char *text) {
  if (!text[0]) return;
  chunker_reset(ch);
  chunker_push(ch, text, warm_sentence, w);
  chunker_flush(ch, warm_sentence, w);
}

static const char *goodbye_in(const char *language);

/* What the tools make the agent say: each tool's filler, the default one, the goodbye. */
static void warm_tool_phrases(struct chunker *ch, struct warm *w, const char *language) {
  struct tools *t = engines_tools(w->eng);
  struct tools_list *l = NULL;
  if (!t || tools_snapshot(t, &l) != 0) return;
  size_t n;
  const struct llm_tool *items = tools_list_items(l, &n);
  char phrase[512];
  for (size_t i = 0; i < n; i++)
    if (tools_filler(t, items[i].name, phrase, sizeof phrase) == 0) warm_text(ch, w, phrase);
  if (n) {
    toolrun_default_filler(language, phrase, sizeof phrase);
    warm_text(ch, w, phrase);
  }
  if (tools_kind(t, "end_call") == TOOLS_END_CALL) warm_text(ch, w, goodbye_in(language));
  tools_list_release(l);
}

static void warm_phrases(struct engines *e, const struct config *cfg, const char *language,
                         const char *voice, int rate, const char *greeting) {
  struct chunker *ch;
  if (chunker_new(&ch) != 0) return;
  struct warm w = {e, {.language = language, .voice = voice, .rate = rate}};
  warm_text(ch, &w, greeting);
  warm_text(ch, &w, apology_in(language, cfg->apology));
  if (cfg->idle_prompt_ms) warm_text(ch, &w, still_there_in(language));
  if (cfg->idle_hangup_ms) warm_text(ch, &w, idle_bye_in(language));
  if (cfg->max_tool_rounds) warm_tool_phrases(ch, &w, language);
  chunker_free(ch);
}

void voice_agent_warm(struct engines *e, const struct config *cfg) {
  warm_phrases(e, cfg, cfg->language, cfg->tts_voice, cfg->tts_rate, cfg->greeting);
}

/* Backchannels: words a listener says to show they follow, not to take the turn. */
static int is_backchannel(const char *text) {
  static const char *const words[] = {
      "uh-huh", "uh huh", "mm-hmm", "mm hmm", "mhm", "hmm", "mm", "uh", "um", "yeah", "yes",
      "yep", "ok", "okay", "right", "sure", "i see", "got it", "alright", "all right",
      "嗯", "嗯嗯", "对", "对对", "对对对", "好", "好的", "是", "是的", "哦", "啊", NULL};
  char norm[128];
  size_t n = 0;
  for (const char *p = text; *p && n + 1 < sizeof norm; p++) {
    unsigned char c = (unsigned char)*p;
    if (c < 0x80 && (ispunct(c) && c != '-')) continue;
    if (!strncmp(p, "，", 3) || !strncmp(p, "。", 3) || !strncmp(p, "！", 3)) {
      p += 2;
      continue;
    }
    norm[n++] = (char)tolower(c);
  }
  while (n && norm[n - 1] == ' ') n--;
  norm[n] = '\0';
  const char *s = norm;
  while (*s == ' ') s++;
  for (int i = 0; words[i]; i++)
    if (strcmp(s, words[i]) == 0) return 1;
  return 0;
}

/* --- the reply pipeline -------------------------------------------------------------- */

/*
 * The reply in progress is va->reply: made by begin_reply, freed by
 * end_reply whichever way it ends (played out, interrupted, dropped). The
 * engines' callbacks below carry the agent, not the reply, and reach the
 * reply through it: freeing the reply releases its jobs, so a callback of
 * theirs only ever arrives while the reply that started them is alive.
 * Every path that may end the reply ends with it.
 */

static void start_next_tts(struct voice_agent *va);
static void check_reply_done(struct voice_agent *va);

/* Lets the reply go; the chunker and the playout it used are emptied for the next. */
static void end_reply(struct voice_agent *va) {
  reply_free(va->reply);
  va->reply = NULL;
  chunker_reset(va->chunker);
  playout_clear(va->po);
}

/* Stops everything of the reply in progress, if any; what was played stays played. */
static void cancel_reply(struct voice_agent *va) {
  end_reply(va);
  toolrun_detach(va->tools); /* its results still go into the history, but start nothing */
}

/* Whether the caller's speech began over the reply, and whether that paused its audio. */
static int barging(const struct voice_agent *va) { return va->reply && va->reply->barge; }
static int paused(const struct voice_agent *va) { return va->reply && va->reply->paused; }
/* Whether the reply is being made before the caller's turn is over. */
static int held(const struct voice_agent *va) { return va->reply && va->reply->held; }

static void on_sentence(void *user, const char *sentence) {
  struct voice_agent *va = user;
  if (reply_push_sentence(va->reply, sentence) != 0) return; /* full: the rest is not said */
  if (va->t.first_sentence == 0) va->t.first_sentence = now_ms();
  start_next_tts(va);
}

static void on_tts_audio(void *user, const int16_t *pcm, size_t n, int rate) {
  struct voice_agent *va = user;
  struct reply *r = va->reply;
  if (r->tts_asked > 0) { /* the sentence's first audio: how long synthesis makes us wait */
    double waited = now_ms() - r->tts_asked;
    if (waited > r->tts_wait_ms) r->tts_wait_ms = waited;
    r->tts_asked = 0;
  }
  if (playout_append(va->po, pcm, n, rate) != 0) return;
  if (va->t.first_audio == 0) va->t.first_audio = now_ms();
  if (va->state == ST_THINKING) {
    set_state(va, ST_SPEAKING);
    va->host.kick(va->host.user);
  }
}

static void tts_finished(struct voice_agent *va) {
  playout_end_segment(va->po);
  reply_end_tts(va->reply);
  start_next_tts(va);
  check_reply_done(va);
}

static void on_tts_done(void *user) { tts_finished(user); }

static void on_tts_error(void *user, const char *message) {
  struct voice_agent *va = user;
  emit_error(va, "tts", message);
  tts_finished(va);
}

static int may_speculate(const struct voice_agent *va, const char *engine);

/*
 * Synthesis runs just ahead of playback: the next sentence is asked for once what is
 * queued would play out within TTS_LEAD_MS plus twice the longest this reply has waited
 * for a sentence's first audio (an engine here: a few ms; a service: its round trip, and
 * more when it is slow). So a call holds the sentence playing and the next one, not a
 * whole reply (at 16 kHz, 32 KB a second of it), and a reply that is interrupted was not
 * synthesised, nor billed, past what it needed.
 */
static int playout_wants_more(const struct voice_agent *va) {
  double lead_ms = TTS_LEAD_MS + 2 * va->reply->tts_wait_ms;
  return (double)playout_queued(va->po) < lead_ms * PLAYOUT_RATE / 1000;
}

/* Synthesis goes one sentence at a time, in order, just ahead of playback; a held reply
 * only with an engine here. The reply may be gone: a tool round that failed at once can
 * have ended it. */
static void start_next_tts(struct voice_agent *va) {
  struct reply *r = va->reply;
  if (!r || r->tts || r->nsent == 0 || !playout_wants_more(va)) return;
  if (r->held && !may_speculate(va, engines_tts_name(va->eng, va->language))) return;
  char *text = reply_pop_sentence(r);
  struct tts_params p = {.text = text, .language = va->language, .voice = va->voice, .rate = va->rate};
  struct tts_cb cb = {on_tts_audio, on_tts_done, on_tts_error, va};
  int first = va->t.tts_req == 0;
  if (first) va->t.tts_req = now_ms();
  int rc = playout_begin_segment(va->po, text);
  r->tts_asked = now_ms();
  if (rc == 0) rc = engines_tts_speak(va->eng, &p, va->home, &cb, &r->tts);
  if (rc == 0) {
    *(r->tts->cached ? &va->use.tts_chars_cached : &va->use.tts_chars) += utf8_chars(text);
    if (first) va->t.tts_cached = r->tts->cached;
  } else {
    playout_end_segment(va->po);
    emit_error(va, "tts", "could not start synthesis");
  }
  free(text);
}

static void speak_text(struct voice_agent *va, const char *text) {
  chunker_push(va->chunker, text, on_sentence, va);
  chunker_flush(va->chunker, on_sentence, va);
}

static void on_llm_token(void *user, const char *text) {
  struct voice_agent *va = user;
  if (va->t.first_token == 0) va->t.first_token = now_ms();
  reply_append(va->reply, text);
  chunker_push(va->chunker, text, on_sentence, va);
}

static void on_llm_usage(void *user, const struct llm_usage *u) {
  struct voice_agent *va = user;
  va->use.llm.input_tokens += u->input_tokens;
  va->use.llm.cached_tokens += u->cached_tokens;
  va->use.llm.cache_write_tokens += u->cache_write_tokens;
  va->use.llm.output_tokens += u->output_tokens;
}

static void llm_finished(struct voice_agent *va) {
  reply_end_llm(va->reply);
  va->reply->llm_done = 1;
  chunker_flush(va->chunker, on_sentence, va);
  check_reply_done(va);
}

static void ask_llm(struct voice_agent *va);
static void record_user_turn(struct voice_agent *va);

static void on_llm_tool_call(void *user, const struct llm_tool_call *call) {
  struct voice_agent *va = user;
  if (toolrun_add(va->tools, call) != 0)
    log_call_warn("agent", va->call_id, "tool call %s dropped: too many in one round", call->name);
}

static const char *goodbye_in(const char *language) {
  return is_zh(language) ? "感谢来电，再见！" : "Thank you for calling. Goodbye!";
}
static const char *goodbye(const struct voice_agent *va) { return goodbye_in(va->language); }

/* Every result of the round is in: the model hears them, unless it ended the call.
 * (A detached round, whose reply is gone, never gets here: toolrun.h.) */
static void round_complete(struct voice_agent *va) {
  struct reply *r = va->reply;
  if (!toolrun_ending(va->tools)) {
    ask_llm(va);
    return;
  }
  if (!text_len(&r->text)) { /* end_call with nothing said: a goodbye before hanging up */
    reply_append(r, goodbye(va)); /* without memory it is said all the same, only not kept */
    chunker_push(va->chunker, goodbye(va), on_sentence, va);
  }
  r->hangup_after = 1;
  llm_finished(va);
}

static void on_round_done(void *user) { round_complete(user); }

static void tool_event(void *user, json_t *ev) { emit(user, ev); }

/* The model called tools: what it said so far is spoken, the calls run, and
 * the reply goes on when their results are in. */
static void tool_round(struct voice_agent *va) {
  struct reply *r = va->reply;
  reply_end_llm(r);
  chunker_flush(va->chunker, on_sentence, va);
  record_user_turn(va);
  size_t said = r->round_start, used = text_len(&r->text);
  if (used && reply_text(r)[used - 1] != ' ')
    reply_append(r, " "); /* the next round's words follow; none when the text is full */
  r->round_start = text_len(&r->text);
  if (toolrun_start(va->tools, reply_text(r) + said, r->is_turn ? va->turn : 0) == 0)
    round_complete(va);
}

static void on_llm_done(void *user, int hangup) {
  struct voice_agent *va = user;
  if (toolrun_collected(va->tools)) {
    if (va->reply->held) va->reply->tools_deferred = 1; /* a tool acts: not before the turn is over */
    else tool_round(va);
    return;
  }
  va->reply->hangup_after = hangup;
  llm_finished(va);
}

/* A tool is still running and the caller has heard nothing since their turn ended. */
static void tool_filler_tick(struct voice_agent *va) {
  int wait = va->cfg->tool_filler_ms;
  struct reply *r = va->reply;
  if (!wait || !r || r->filler_said || va->t.first_sent > 0 || r->paused ||
      !toolrun_running(va->tools))
    return;
  double since = va->t.end > 0 ? va->t.end : va->t.final;
  if (since <= 0 || now_ms() - since < wait) return;
  char phrase[512];
  toolrun_filler(va->tools, va->language, phrase, sizeof phrase);
  r->filler_said = 1;
  on_sentence(va, phrase);
}

static void on_llm_error(void *user, const char *message) {
  struct voice_agent *va = user;
  struct reply *r = va->reply;
  emit_error(va, "llm", message);
  if (text_len(&r->text) == r->round_start) { /* nothing said since the last tool round */
    const char *apology = phrase_apology(va);
    int rc = r->round_start ? reply_append(r, " ") : 0;
    if (rc == 0) rc = reply_append(r, apology);
    /* Without memory to keep it in the text, the apology is still said. */
    chunker_push(va->chunker, rc ? apology : reply_text(r) + r->round_start, on_sentence, va);
  }
  llm_finished(va);
}

/* A new reply in place of any in progress; 0, or -ENOMEM and no reply at all. */
static int begin_reply(struct voice_agent *va, int is_turn) {
  cancel_reply(va);
  toolrun_begin_reply(va->tools);
  va->answered = is_turn;
  int rc = reply_new(&va->reply, is_turn);
  if (rc) log_call_warn("agent", va->call_id, "no memory for a reply");
  return rc;
}

/* A reply that is not the LLM's: a greeting, an idle prompt, a farewell. */
static void say(struct voice_agent *va, const char *text) {
  if (begin_reply(va, 0) != 0) return;
  set_state(va, ST_THINKING);
  memset(&va->t, 0, sizeof va->t);
  reply_append(va->reply, text); /* without memory it is said all the same, only not kept */
  va->reply->llm_done = 1;
  speak_text(va, text);
}

/* The tools to offer: none once the reply has had its rounds (the model must answer). */
static struct tools_list *offer_tools(struct voice_agent *va, struct llm_params *p) {
  struct tools *t = engines_tools(va->eng);
  struct tools_list *l = NULL;
  if (!t || toolrun_rounds(va->tools) >= va->cfg->max_tool_rounds || tools_snapshot(t, &l) != 0)
    return NULL;
  p->tools = tools_list_items(l, &p->ntools);
  return l;
}

/* The history, and the caller's turn unless a tool round already put it there. */
static void ask_llm(struct voice_agent *va) {
  toolrun_settle(va->tools);
  size_t cap = history_count(va->hist) + 1;
  struct llm_turn *turns = calloc(cap, sizeof *turns);
  int rc = -ENOMEM;
  if (turns) {
    size_t n = history_turns(va->hist, turns, cap - 1);
    if (!va->reply->user_in_history)
      turns[n++] = (struct llm_turn){.role = LLM_USER, .text = text_str(&va->user_text)};
    struct llm_params p = {.system = va->system_prompt, .turns = turns, .nturns = n,
                           .language = va->language, .max_tokens = va->cfg->llm_max_tokens,
                           .temperature = va->cfg->llm_temperature};
    struct tools_list *offered = offer_tools(va, &p);
    struct llm_cb cb = {.token = on_llm_token, .usage = on_llm_usage,
                        .tool_call = on_llm_tool_call, .done = on_llm_done,
                        .error = on_llm_error, .user = va};
    rc = engines_llm_generate(va->eng, &p, va->home, &cb, &va->reply->llm);
    tools_list_release(offered);
    free(turns);
  }
  if (rc) on_llm_error(va, "could not start generating");
}

static void record_user_turn(struct voice_agent *va) {
  if (va->reply->user_in_history) return;
  history_add_user(va->hist, text_str(&va->user_text));
  va->reply->user_in_history = 1;
}

/* The end of what the AI said, which the next pause is judged against; without memory
 * for it, nothing (a cue from an older reply would be wrong). */
static void remember_ai(struct voice_agent *va, const char *text) {
  size_t n = strlen(text), cap = AI_LAST_TEXT - 1;
  const char *from = text + (n > cap ? n - cap : 0);
  while (((unsigned char)*from & 0xC0) == 0x80) from++; /* not inside a character */
  if (text_set(&va->ai_last, from) != 0) text_clear(&va->ai_last);
}

/* The reply was played out in full (or there was nothing to play): it ends here. */
static void check_reply_done(struct voice_agent *va) {
  struct reply *r = va->reply;
  if (!r || !r->llm_done || r->tts || r->nsent || r->paused || r->held || !playout_drained(va->po))
    return;
  if (text_len(&r->text)) {
    const char *said = reply_text(r);
    remember_ai(va, said);
    record_user_turn(va);
    history_add_assistant(va->hist, said + r->round_start, 0); /* rounds hold the rest */
    emit_reply(va, said, 0);
  }
  emit_usage(va);
  int hang = r->hangup_after, is_turn = r->is_turn;
  end_reply(va);
  if (is_turn) va->idle_ms = 0; /* an idle prompt does not restart the idle clock */
  set_state(va, va->asr ? ST_USER : ST_LISTENING);
  if (hang || va->end_reason[0]) {
    va->ended = 1;
    va->host.end(va->host.user, va->end_reason[0] ? va->end_reason : "goodbye");
  }
}

/* --- the caller's turn ------------------------------------------------------------------ */

/* dst = a + " " + b, cut to fit (the parts may be long transcripts). */
static void join_text(char *dst, size_t cap, const char *a, const char *b) {
  size_t la = strnlen(a, cap - 1), lb = strnlen(b, cap - 1), n = 0;
  memcpy(dst, a, la);
  n = la;
  if (la && lb && n + 1 < cap) dst[n++] = ' ';
  if (lb > cap - 1 - n) lb = cap - 1 - n;
  memcpy(dst + n, b, lb);
  dst[n + lb] = '\0';
}

static void on_asr_partial(void *user, const char *text) {
  const struct asr_ctx *ctx = user;
  struct voice_agent *va = ctx->va;
  if (ctx->early) return; /* its words come whole, at its end */
  text_set(&va->partial, text); /* without memory the session's older words stay */
  char full[MAX_TEXT];
  join_text(full, sizeof full, text_str(&va->heard_before), text);
  if (full[0]) emit(va, json_pack("{s:s,s:s,s:b}", "type", "transcript", "text", full, "final", 0));
}

/* A barge-in turned out to be a real interruption: stop, and keep what was heard. */
static void interrupt_reply(struct voice_agent *va) {
  char played[MAX_TEXT];
  int complete;
  playout_played_text(va->po, played, sizeof played, &complete);
  /* After a tool round, what was said before the calls is in the history with them; while
   * the calls still run nothing may come between them and their results. */
  size_t skip = toolrun_rounds(va->tools) ? va->reply->round_start : 0;
  if (skip > strlen(played)) skip = strlen(played);
  if (played[skip] && !toolrun_running(va->tools)) {
    record_user_turn(va);
    history_add_assistant(va->hist, played + skip, 1);
  }
  remember_ai(va, played);
  emit_reply(va, played, 1);
  emit_latency(va, 1); /* a greeting or prompt has only barge_in_ms */
  emit_usage(va);
  cancel_reply(va);
}

static void resume_reply(struct voice_agent *va) {
  if (va->reply) va->reply->paused = va->reply->barge = 0;
  va->t.ai_stopped = 0;
  set_state(va, ST_SPEAKING);
  check_reply_done(va);
}

/* The number of the turn the caller's next words make: the same one when
 * they continue a turn whose reply was dropped before it was spoken. */
static int next_turn(const struct voice_agent *va) {
  return va->same_turn ? va->turn : va->turn + 1;
}

/* A new turn of the caller's, with the times its recognition took. `text` may be
 * heard_before's, which is emptied here: it is not read after the copy. Without memory
 * for the words the turn goes unanswered, as without memory for a reply. */
static void answer(struct voice_agent *va, const char *text, const struct stamps *t) {
  int rc = text_set(&va->user_text, text);
  va->turn = next_turn(va);
  text_clear(&va->heard_before);
  va->same_turn = 0;
  if (rc) {
    log_call_warn("agent", va->call_id, "no memory for the caller's words");
    cancel_reply(va); /* what begin_reply would have ended */
  } else {
    rc = begin_reply(va, 1);
  }
  if (rc) {
    set_state(va, ST_LISTENING);
    return;
  }
  set_state(va, ST_THINKING);
  va->t = (struct stamps){.last_voiced = t->last_voiced, .end = t->end, .final = t->final,
                          .asr_req = t->asr_req};
  ask_llm(va);
}

/* The final words of an utterance; `turn` when they start (or continue) a turn,
 * absent when they were only a backchannel over the reply. */
static void emit_final(struct voice_agent *va, const char *text, int is_turn) {
  json_t *ev = json_pack("{s:s,s:s,s:b}", "type", "transcript", "text", text, "final", 1);
  if (ev && is_turn) json_object_set_new(ev, "turn", json_integer(next_turn(va)));
  emit(va, ev);
}

static void on_early_final(struct voice_agent *va, const char *text);

static void on_asr_final(void *user, const char *text) {
  const struct asr_ctx *ctx = user;
  struct voice_agent *va = ctx->va;
  if (ctx->early) {
    on_early_final(va, text);
    return;
  }
  asr_release(va->asr);
  va->asr = NULL;
  double t_final = now_ms();
  char full[MAX_TEXT];
  join_text(full, sizeof full, text_str(&va->heard_before), text);
  int barge = barging(va);
  if (full[0]) emit_final(va, full, !(barge && (!text[0] || is_backchannel(text))));
  if (barge) {
    if (!text[0] || is_backchannel(text)) {
      resume_reply(va);
      return;
    }
    interrupt_reply(va);
  }
  if (!full[0]) {
    set_state(va, ST_LISTENING);
    return;
  }
  struct stamps t = va->t;
  t.final = t_final;
  answer(va, full, &t);
}

static void on_asr_error(void *user, const char *message) {
  const struct asr_ctx *ctx = user;
  struct voice_agent *va = ctx->va;
  struct asr_session **session = ctx->early ? &va->asr_early : &va->asr;
  asr_release(*session);
  *session = NULL;
  emit_error(va, "asr", message);
  if (ctx->early && va->asr) return; /* the caller went on: the words before the pause are lost */
  if (ctx->early) va->pause_judged = 0;
  if (barging(va)) resume_reply(va);
  else say(va, phrase_apology(va));
}

static void start_recognition(struct voice_agent *va, int lag_ms) {
  asr_release(va->asr);
  va->asr = NULL;
  struct asr_params p = {.language = va->language, .call_id = va->call_id};
  struct asr_cb cb = {on_asr_partial, on_asr_final, on_asr_error, &va->ctx[va->live_ctx]};
  text_clear(&va->partial);
  if (engines_asr_start(va->eng, &p, va->home, &cb, &va->asr) != 0) {
    emit_error(va, "asr", "could not start recognition");
    return;
  }
  int frames = (lag_ms + PREROLL_EXTRA_MS) / 20 + 1;
  if (frames > va->preroll_n) frames = va->preroll_n;
  /* i = 1 is the onset frame itself, which voice_agent_hear feeds next */
  for (int i = frames; i > 1; i--) {
    int idx = (va->preroll_head - i + PREROLL_FRAMES) % PREROLL_FRAMES;
    feed_asr(va, va->preroll[idx]);
  }
}

/* --- the end of the caller's turn (docs/turns.md) ---------------------------------------- */

static int is_service(const char *engine) {
  static const char *const services[] = {"openai", "anthropic", "elevenlabs", "azure", NULL};
  for (int i = 0; services[i]; i++)
    if (strcmp(engine, services[i]) == 0) return 1;
  return 0;
}

/* May `engine` be asked for something the caller may never hear? */
static int may_speculate(const struct voice_agent *va, const char *engine) {
  const char *mode = va->cfg->speculate;
  return strcmp(mode, "all") == 0 || (strcmp(mode, "local") == 0 && !is_service(engine));
}

static int min_silence(const struct voice_agent *va) {
  int lo = va->cfg->endpoint_min_ms, hi = va->cfg->endpoint_ms;
  return lo < hi ? lo : hi;
}

/* The pitch of the words just before the pause, oldest frame first. */
static enum turn_pitch pitch_before_pause(const struct voice_agent *va) {
  float hz[PREROLL_FRAMES];
  int n = va->preroll_n;
  for (int i = n; i > 0; i--) hz[n - i] = va->pitch_hz[(va->preroll_head - i + PREROLL_FRAMES) % PREROLL_FRAMES];
  return turn_pitch_trend(hz, (size_t)n);
}

/* The silence that ends this turn, from its words so far and how sure the recogniser is of
 * the last one (negative: it does not say): the VAD ends the turn then. */
static enum turn_cue set_turn_silence(struct voice_agent *va, const char *words, float last_conf) {
  enum turn_cue cue = turn_cue_trusted(turn_text_cue(words, text_str(&va->ai_last)), last_conf);
  int ms = turn_silence_ms(cue, va->pitch, min_silence(va), va->cfg->endpoint_ms);
  vad_set_endpoint_ms(va->vad, ms);
  static const char *const pitch[] = {"unknown", "falling", "level"};
  log_call_debug("agent", va->call_id,
                 "pause after \"%s\" (last word %.2f): %s, pitch %s, turn ends at %d ms", words,
                 last_conf, turn_cue_name(cue), pitch[va->pitch], ms);
  return cue;
}

/*
 * The caller has paused long enough to judge. With an engine here (or
 * `speculate = all`) the words so far are asked for at once, in a session
 * of their own; else the live session's partial words are all there is.
 */
static void judge_pause(struct voice_agent *va) {
  if (!va->asr || barging(va) || va->pause_judged || !vad_in_speech(va->vad)) return;
  int lo = min_silence(va), at = lo - JUDGE_AHEAD_MS < lo / 2 ? lo - JUDGE_AHEAD_MS : lo / 2;
  if (va->last_voiced_ms < (at < 60 ? 60 : at)) return;
  va->pause_judged = 1;
  va->pitch = pitch_before_pause(va);
  if (va->asr_early || !may_speculate(va, engines_asr_name(va->eng))) {
    char words[MAX_TEXT];
    join_text(words, sizeof words, text_str(&va->heard_before), text_str(&va->partial));
    set_turn_silence(va, words, -1);
    return;
  }
  va->asr_early = va->asr;
  va->asr = NULL;
  va->ctx[va->live_ctx].early = 1;
  va->live_ctx ^= 1;
  va->ctx[va->live_ctx].early = 0;
  va->early_done = 0;
  va->t.asr_req = now_ms();
  asr_finish(va->asr_early);
}

/* Starts the reply to words the caller may yet add to; nothing of it is heard until then.
 * Without memory for the words none is made: the turn is answered when it ends. */
static void prepare_reply(struct voice_agent *va) {
  if (text_set(&va->user_text, text_str(&va->early_text)) != 0) return;
  double req = va->t.asr_req, final = va->t.final;
  if (begin_reply(va, 1) != 0) return;
  va->reply->held = 1;
  va->t = (struct stamps){.asr_req = req, .final = final, .speculated = 1};
  ask_llm(va);
}

static void on_early_final(struct voice_agent *va, const char *text) {
  float last_conf = asr_last_word_confidence(va->asr_early);
  asr_release(va->asr_early);
  va->asr_early = NULL;
  if (va->asr) { /* the caller went on meanwhile: these words come first */
    if (text_join(&va->heard_before, text_str(&va->heard_before), text) != 0)
      log_call_warn("agent", va->call_id, "no memory for the words before a pause");
    return;
  }
  va->t.final = now_ms();
  if (text_join(&va->early_text, text_str(&va->heard_before), text) != 0) {
    log_call_warn("agent", va->call_id, "no memory for the words before a pause");
    text_clear(&va->early_text); /* not an older pause's words in their place */
  }
  va->early_done = 1;
  const char *words = text_str(&va->early_text);
  if (!vad_in_speech(va->vad)) { /* the turn ended before its words came */
    va->pause_judged = 0;
    if (!words[0]) {
      set_state(va, ST_LISTENING);
      return;
    }
    emit_final(va, words, 1);
    struct stamps t = va->t;
    answer(va, words, &t);
    return;
  }
  if (words[0])
    emit(va, json_pack("{s:s,s:s,s:b}", "type", "transcript", "text", words, "final", 0));
  /* After a phrase left open the caller will most likely go on: a reply made now would
   * be dropped, so it waits for the turn's end like any other. */
  enum turn_cue cue = set_turn_silence(va, words, last_conf);
  if (words[0] && cue != TURN_MORE && may_speculate(va, engines_llm_name(va->eng)))
    prepare_reply(va);
}

/* Speech again after a pause that was judged: the turn goes on, and what was made for it
 * is dropped unheard (its cost stays in the turn's usage). */
static void caller_went_on(struct voice_agent *va) {
  va->pause_judged = 0;
  vad_set_endpoint_ms(va->vad, va->cfg->endpoint_ms);
  if (held(va)) {
    va->llm_wasted++;
    cancel_reply(va);
  }
  if (va->early_done) {
    if (text_set(&va->heard_before, text_str(&va->early_text)) != 0) /* the older words stay */
      log_call_warn("agent", va->call_id, "no memory for the words before a pause");
    va->early_done = 0;
  }
  if (!va->asr) start_recognition(va, 0); /* from just before this frame */
}

/* The silence reached what the words asked for: the turn is the caller's no more. */
static void declare_turn(struct voice_agent *va) {
  va->early_done = 0;
  const char *words = text_str(&va->early_text);
  if (!words[0]) {
    set_state(va, ST_LISTENING);
    return;
  }
  emit_final(va, words, 1);
  if (!held(va)) {
    struct stamps t = va->t;
    answer(va, words, &t);
    return;
  }
  va->turn = next_turn(va);
  text_clear(&va->heard_before);
  va->same_turn = 0;
  va->reply->held = 0;
  set_state(va, ST_THINKING);
  if (va->reply->tools_deferred) {
    va->reply->tools_deferred = 0;
    tool_round(va);
  }
  start_next_tts(va);
  if (playout_queued(va->po)) {
    set_state(va, ST_SPEAKING);
    va->host.kick(va->host.user);
  }
  check_reply_done(va);
}

static void on_onset(struct voice_agent *va) {
  double now = now_ms();
  int lag = vad_onset_lag_ms(va->vad);
  va->idle_ms = 0;
  va->idle_prompted = 0;
  va->pause_judged = 0;
  vad_set_endpoint_ms(va->vad, va->cfg->endpoint_ms);
  if (va->reply && (va->state == ST_SPEAKING || playout_queued(va->po))) {
    if (!va->cfg->barge_in) return; /* half duplex: the AI finishes first */
    va->reply->barge = 1; /* paused once barge_in_min_ms of it is voiced */
    va->t.onset = now;
    va->t.onset_lag = lag;
    va->t.ai_stopped = 0;
    /* Over the reply, a pause is not judged: the AI waits, paused, between the bounds. */
    vad_set_endpoint_ms(va->vad, (min_silence(va) + va->cfg->endpoint_ms) / 2);
    log_call_debug("agent", va->call_id, "onset over the reply (began %d ms ago, %d ms voiced)",
              lag, vad_voiced_ms(va->vad));
  } else if (va->reply) {
    /* Still thinking: the caller was not done. Their words so far are kept, unless a
     * tool has already acted on them: then they are a turn of their own (in the history)
     * and what the caller says now is the next one. */
    if (va->reply->is_turn && !toolrun_rounds(va->tools)) {
      if (text_set(&va->heard_before, text_str(&va->user_text)) != 0)
        log_call_warn("agent", va->call_id, "no memory for the words before a pause");
      va->same_turn = 1;
    }
    emit_usage(va);
    cancel_reply(va);
  }
  set_state(va, ST_USER);
  start_recognition(va, lag);
}

static void on_end_of_speech(struct voice_agent *va, int discard) {
  va->pause_judged = 0;
  if (!va->asr && !va->asr_early && !va->early_done) return;
  if (discard) {
    asr_release(va->asr);
    va->asr = NULL;
    asr_release(va->asr_early);
    va->asr_early = NULL;
    va->early_done = 0;
    if (held(va)) cancel_reply(va);
    if (barging(va)) {
      resume_reply(va);
    } else if (text_len(&va->heard_before)) {
      struct stamps t = {0};
      answer(va, text_str(&va->heard_before), &t);
    } else {
      set_state(va, ST_LISTENING);
    }
    return;
  }
  va->t.end = now_ms();
  va->t.last_voiced = va->t.end - (va->last_voiced_ms > 0 ? (double)va->last_voiced_ms : 0);
  if (va->asr) { /* the words are asked for now */
    va->t.asr_req = 0;
    asr_finish(va->asr);
    if (!barging(va)) set_state(va, ST_THINKING);
  } else if (!va->early_done) { /* asked for in the pause, and still coming */
    set_state(va, ST_THINKING);
  } else {
    declare_turn(va);
  }
}

/* --- idle ------------------------------------------------------------------------------ */

static void idle_tick(struct voice_agent *va) {
  if (va->state != ST_LISTENING || va->reply || va->ended) return;
  va->idle_ms += 20;
  const struct config *c = va->cfg;
  if (c->idle_hangup_ms && va->idle_ms >= c->idle_hangup_ms) {
    snprintf(va->end_reason, sizeof va->end_reason, "idle");
    say(va, phrase_idle_bye(va));
  } else if (c->idle_prompt_ms && va->idle_ms >= c->idle_prompt_ms && !va->idle_prompted) {
    va->idle_prompted = 1;
    say(va, phrase_still_there(va));
    va->idle_ms = c->idle_prompt_ms; /* keep counting towards the hang-up */
  }
}

/* --- the media side ------------------------------------------------------------------------ */

/*
 * A frame of the caller's turn, to the recogniser. Of a pause only its
 * first ASR_TAIL_MS is fed, and so of the endpoint's silence at the end:
 * the rest tells a recogniser nothing, and pocketsphinx finds words in it
 * (a trailing "m" in comfort noise) while a Whisper-style service is billed
 * for it and may invent text from it. When speech resumes after a longer
 * pause, the ASR_RESUME_MS before it come from the pre-roll ring, so a soft
 * first consonant below the VAD's threshold is not lost. `quiet_before_ms`:
 * how long the caller had been quiet before this frame (0 at the onset,
 * whose frames before it start_recognition fed).
 */
static void feed_speech(struct voice_agent *va, const int16_t *frame, int quiet_before_ms) {
  if (va->last_voiced_ms > ASR_TAIL_MS) return;
  int skipped = va->last_voiced_ms == 0 ? (quiet_before_ms - ASR_TAIL_MS) / 20 : 0;
  if (skipped > ASR_RESUME_MS / 20) skipped = ASR_RESUME_MS / 20;
  if (skipped > va->preroll_n - 1) skipped = va->preroll_n - 1;
  for (int i = skipped + 1; i > 1; i--) /* i = 1 is this frame */
    feed_asr(va, va->preroll[(va->preroll_head - i + PREROLL_FRAMES) % PREROLL_FRAMES]);
  feed_asr(va, frame);
}

void voice_agent_hear(struct voice_agent *va, const int16_t *pcm) {
  static const int16_t zeros[FRAME16];
  const int16_t *in16 = pcm ? pcm : zeros;
  int16_t clean[FRAME16];
  double echo_db = -120;
  if (va->aec) {
    aec_capture(va->aec, in16, clean);
    echo_db = aec_residual_db(va->aec);
  } else {
    memcpy(clean, in16, sizeof clean);
  }
  memcpy(va->preroll[va->preroll_head], clean, sizeof clean);
  va->preroll_head = (va->preroll_head + 1) % PREROLL_FRAMES;
  if (va->preroll_n < PREROLL_FRAMES) va->preroll_n++;

  int voiced_before = vad_voiced_ms(va->vad), quiet_before = va->last_voiced_ms;
  enum vad_event ev = vad_process(va->vad, clean, echo_db);
  va->last_voiced_ms = vad_voiced_ms(va->vad) > voiced_before ? 0 : va->last_voiced_ms + 20;
  int slot = (va->preroll_head - 1 + PREROLL_FRAMES) % PREROLL_FRAMES; /* this frame's */
  va->pitch_hz[slot] = va->last_voiced_ms == 0 ? (float)vad_pitch_hz(va->vad) : 0;
  int fresh = ev == VAD_ONSET;
  if (fresh) on_onset(va);
  else if (va->pause_judged && va->last_voiced_ms == 0 && vad_in_speech(va->vad))
    caller_went_on(va), fresh = 1;
  if (va->asr && vad_in_speech(va->vad)) feed_speech(va, clean, fresh ? 0 : quiet_before);
  judge_pause(va);
  if (barging(va) && !va->reply->paused && vad_in_speech(va->vad) &&
      vad_voiced_ms(va->vad) >= va->cfg->barge_in_min_ms) {
    va->reply->paused = 1; /* the AI's audio stops with the next frame */
    log_call_debug("agent", va->call_id, "caller speaks over the reply; paused");
  }
  if (ev == VAD_END || ev == VAD_DISCARD) on_end_of_speech(va, ev == VAD_DISCARD);
  if (++va->level_count >= LEVEL_EVERY) {
    va->level_count = 0;
    emit(va, json_pack("{s:s,s:f}", "type", "level", "mic_db", round(vad_level_db(va->vad))));
  }
  idle_tick(va);
  tool_filler_tick(va);
}

/* What we send is the echo canceller's reference. A reply kept at 16 kHz
 * hands over the samples the frame was made from, in step with it; other
 * rates are resampled back down (the resampler made on first need);
 * silence needs neither. Called before va->spoke takes this frame's value. */
static void reference(struct voice_agent *va, const int16_t *pcm, int audio) {
  if (!va->aec) return;
  const int16_t *sent16 = audio ? playout_sent16(va->po) : NULL;
  if (sent16) {
    aec_playback(va->aec, sent16);
    return;
  }
  int16_t out16[FRAME16 + 16] = {0};
  if (audio && (va->down_out || resampler_new(&va->down_out, 48000, 16000, 3) == 0)) {
    size_t n = resampler_process(va->down_out, pcm, VOICE_FRAME, out16, sizeof out16 / 2);
    if (n < FRAME16) memset(out16 + n, 0, (FRAME16 - n) * sizeof *out16);
  } else if (va->spoke) {
    resampler_reset(va->down_out); /* the next talkspurt starts clean */
  }
  aec_playback(va->aec, out16);
}

int voice_agent_speak(struct voice_agent *va, int16_t *pcm) {
  const char *started = NULL;
  int audio = 0;
  if (va->reply && !paused(va) && !held(va)) {
    audio = playout_take(va->po, pcm, &started);
    start_next_tts(va); /* the next sentence, once what is queued runs low */
  }
  if (paused(va) && va->t.ai_stopped == 0) va->t.ai_stopped = now_ms();
  if (!audio) memset(pcm, 0, VOICE_FRAME * sizeof *pcm);
  reference(va, pcm, audio);
  va->spoke = audio;
  if (!audio) {
    if (va->reply && !paused(va)) check_reply_done(va);
    return 0;
  }
  double now = now_ms();
  if (started) emit(va, json_pack("{s:s,s:s}", "type", "reply_partial", "text", started));
  if (va->t.first_sent == 0) {
    va->t.first_sent = now;
    if (va->reply->is_turn) record_user_turn(va);
    emit_latency(va, 0); /* a greeting or prompt: turn 0, how soon its audio came */
  }
  return 1;
}

int voice_agent_speak_again(struct voice_agent *va, int16_t *pcm) {
  if (va->spoke || !va->reply || paused(va)) return 0;
  aec_unplay(va->aec); /* the silent frame never went out */
  return voice_agent_speak(va, pcm);
}

int voice_agent_out_rate(const struct voice_agent *va) { return playout_made_rate(va->po); }

/* --- life ------------------------------------------------------------------------------------ */

/* 0, or -ENOMEM when the call's own greeting cannot be copied: the call is not made, as
 * for any other allocation of the agent's (a prompt that cannot be copied falls back to
 * the configured one, as it always has). */
static int resolve_settings(struct voice_agent *va, const struct voice_settings *s) {
  const struct config *c = va->cfg;
  snprintf(va->language, sizeof va->language, "%s", s && s->language[0] ? s->language : c->language);
  snprintf(va->voice, sizeof va->voice, "%s", s && s->voice[0] ? s->voice : c->tts_voice);
  va->rate = s && s->rate ? s->rate : c->tts_rate;
  va->system_prompt = c->system_prompt;
  if (s && s->system_prompt[0] && (va->prompt_copy = strdup(s->system_prompt)))
    va->system_prompt = va->prompt_copy;
  va->greeting = s && s->has_greeting ? "" : c->greeting; /* given empty: none */
  if (s && s->has_greeting && s->greeting[0]) {
    if (!(va->greeting_copy = strdup(s->greeting))) return -ENOMEM;
    va->greeting = va->greeting_copy;
  }
  return 0;
}

int voice_agent_new(struct voice_agent **out, const char *call_id, const struct config *cfg,
                    struct engines *engines, struct mailbox *home,
                    const struct voice_settings *settings, const struct agent_host *host) {
  struct voice_agent *va = calloc(1, sizeof *va);
  if (!va) return -ENOMEM;
  snprintf(va->call_id, sizeof va->call_id, "%s", call_id);
  va->ctx[0].va = va->ctx[1].va = va;
  va->cfg = cfg;
  va->eng = engines;
  va->home = home;
  va->host = *host;
  text_init(&va->user_text, MAX_TEXT - 1);
  text_init(&va->heard_before, MAX_TEXT - 1);
  text_init(&va->partial, MAX_TEXT - 1);
  text_init(&va->early_text, MAX_TEXT - 1);
  text_init(&va->ai_last, AI_LAST_TEXT - 1);
  struct vad_config vc = {cfg->vad_threshold_db, cfg->vad_onset_ms, cfg->endpoint_ms,
                          cfg->min_speech_ms};
  /* va->down_out is made when a reply first needs it (reference()) */
  int rc = resolve_settings(va, settings);
  if (rc == 0 && cfg->echo_cancel) rc = aec_new(&va->aec, AEC_MAX_DELAY_MS);
  if (rc == 0) rc = vad_new(&va->vad, &vc);
  if (rc == 0) rc = chunker_new(&va->chunker);
  if (rc == 0) rc = playout_new(&va->po);
  if (rc == 0) rc = history_new(&va->hist, cfg->history_turns);
  struct toolrun_host th = {tool_event, on_round_done, va};
  if (rc == 0) rc = toolrun_new(&va->tools, engines_tools(engines), home, call_id, va->hist, &th);
  if (rc) {
    voice_agent_free(va);
    return rc;
  }
  *out = va;
  return 0;
}

void voice_agent_free(struct voice_agent *va) {
  if (!va) return;
  emit_usage(va); /* what the call used since its last reply ended */
  asr_release(va->asr);
  asr_release(va->asr_early);
  reply_free(va->reply); /* its jobs with it */
  chunker_free(va->chunker);
  playout_free(va->po);
  toolrun_free(va->tools); /* before the history its results go to */
  history_free(va->hist);
  vad_free(va->vad);
  aec_free(va->aec);
  resampler_free(va->down_out);
  text_clear(&va->user_text);
  text_clear(&va->heard_before);
  text_clear(&va->partial);
  text_clear(&va->early_text);
  text_clear(&va->ai_last);
  free(va->prompt_copy);
  free(va->greeting_copy);
  free(va);
}

void voice_agent_start(struct voice_agent *va) {
  emit(va, json_pack("{s:s,s:s}", "type", "state", "state", state_names[va->state]));
  /* A call with its own language, voice or greeting: its phrases are ready by the time
   * it needs them (the greeting itself joins the synthesis this starts). */
  warm_phrases(va->eng, va->cfg, va->language, va->voice, va->rate, va->greeting);
  if (va->greeting[0]) say(va, va->greeting);
}
