/*
 * reply: the AI's reply in progress, from the moment the agent starts to
 * answer (a turn of the caller's, a greeting, a prompt) until it has been
 * played out, interrupted or dropped.
 *
 * Everything that lives exactly as long as one reply is here, so it cannot
 * outlive it: the generation and the synthesis under way, the sentences
 * waiting for synthesis, the text so far and the reply's flags. The agent
 * holds at most one; "a reply is active" is "the agent holds one", and
 * freeing it releases its engine jobs, which then never call back
 * (src/engines/job.h). What serves every reply of a call (the sentence
 * chunker, the playout queue, the latency stamps of the caller's turn)
 * stays with the agent.
 */
#ifndef TS_AGENT_REPLY_H
#define TS_AGENT_REPLY_H

#include <stddef.h>

#include "agent/text.h"

#define REPLY_MAX_TEXT 4096 /* bytes of the reply's text, with its NUL */
/* Sentences waiting for synthesis: they wait for playback to catch up, so a long reply
 * queues most of its sentences; its text (REPLY_MAX_TEXT) holds fewer than this. */
#define REPLY_MAX_SENTENCES 1024

struct llm_job;
struct tts_job;

struct reply {
  struct llm_job *llm; /* the generation under way; NULL once done and during tool calls */
  struct tts_job *tts; /* the sentence being synthesised; one at a time, in order */
  double tts_asked;    /* when it was asked for (ms), until its first audio came; else 0 */
  double tts_wait_ms;  /* the longest a sentence of this reply took to start coming */
  char **sentences; /* waiting for synthesis, oldest first; grown as they come */
  int nsent, sentcap;
  /* Everything the reply says, over all its tool rounds: on the heap at its size, since
   * most replies are a sentence or two and a call holds one at a time. */
  struct text text;
  size_t round_start; /* text before it was said in earlier tool rounds */
  int is_turn;         /* it answers a caller's turn (not a greeting or prompt) */
  int user_in_history; /* the caller's turn it answers is in the history already */
  int llm_done;        /* no more text will come */
  int hangup_after;    /* the call ends once it has been played */
  int held;            /* made before the caller's turn is over: silent until it is */
  int tools_deferred;  /* its model asked for tools while held: they run after the turn */
  int filler_said;     /* a filler covered a slow tool */
  int barge;           /* the caller started speaking over it */
  int paused;          /* ...long enough that its audio stopped */
};

/* A reply of its own, empty; 0 or -ENOMEM. */
int reply_new(struct reply **out, int is_turn);
/* Releases its jobs (no callback after this) and its sentences. NULL is fine. */
void reply_free(struct reply *r);

/* Appends streamed text, cut at REPLY_MAX_TEXT - 1 bytes: 0, or -ENOMEM and the text
 * stays as it was (the words are still spoken, only not kept). */
int reply_append(struct reply *r, const char *text);
/* The text so far, never NULL. */
const char *reply_text(const struct reply *r);
/* Queues a copy of a sentence for synthesis: 0, -ENOSPC when full, -ENOMEM. */
int reply_push_sentence(struct reply *r, const char *sentence);
/* The oldest sentence queued, the caller's to free; NULL when there is none. */
char *reply_pop_sentence(struct reply *r);

/* The generation or synthesis has ended: its job is let go. */
void reply_end_llm(struct reply *r);
void reply_end_tts(struct reply *r);

#endif
