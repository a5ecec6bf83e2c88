/*
 * turn: has the caller finished their turn? The end-of-turn rule of the
 * voice agent (docs/turns.md).
 *
 * A pause in the caller's speech ends their turn after a silence that
 * depends on what they said (the words so far), on the dialog (what the AI
 * last asked) and on how they said it (the pitch of their last words). The
 * functions here are pure: the voice agent calls them once a pause is long
 * enough to look at, and again when the words change.
 */
#ifndef TS_AGENT_TURN_H
#define TS_AGENT_TURN_H

#include <stddef.h>
#include <stdint.h>

enum turn_cue {
  TURN_DONE,    /* the words make a whole sentence, question or answer */
  TURN_UNSURE,  /* no words to judge by */
  TURN_MORE,    /* the words stop mid-phrase: "for", "and", "um", digits being dictated */
};

enum turn_pitch {
  TURN_PITCH_UNKNOWN, /* too little voiced audio to tell */
  TURN_PITCH_FALL,    /* the last words fell in pitch, as a statement ends */
  TURN_PITCH_LEVEL,   /* level or rising: a phrase held open, or a question */
};

/*
 * What the words say. `text` is the caller's turn so far (English,
 * Chinese, or both; punctuated by a service or not); `ai_last` is what the
 * AI said last ("" if nothing), which tells whether it asked for digits.
 */
enum turn_cue turn_text_cue(const char *text, const char *ai_last);

/*
 * A last word the recogniser gives a posterior probability below this is
 * not trusted to say the sentence is finished.
 */
#define TURN_TRUST_MIN 0.2f

/*
 * The cue, given how sure the recogniser is of the last word (its
 * posterior, 0-1; negative when the recogniser does not say): a sentence
 * that reads as finished but whose last word is doubtful is judged as a
 * phrase left open. A recogniser given a phrase cut short tends to finish
 * it with a word that is not there ("a table for" heard as "a table for
 * it"), and such a word is the one it doubts.
 */
enum turn_cue turn_cue_trusted(enum turn_cue cue, float last_word_conf);

/*
 * What the pitch says: `hz` holds the pitch of the caller's last `n` 20 ms
 * frames, oldest first, 0 where a frame had none (the VAD measures it).
 */
enum turn_pitch turn_pitch_trend(const float *hz, size_t n);

/*
 * The silence, in ms, after which the turn is over: `min_ms` for a
 * finished sentence, `max_ms` for a phrase left open, and between the two
 * when only the pitch can tell.
 */
int turn_silence_ms(enum turn_cue cue, enum turn_pitch pitch, int min_ms, int max_ms);

const char *turn_cue_name(enum turn_cue cue);

#endif
