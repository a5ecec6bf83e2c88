// The consistency bench's arithmetic (bench/asr_consistency_wer.mjs): word
// error rate, the kinds of error, trailing insertions, and the summary the
// bench prints. The bench itself is run by hand (docs/asr.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { words, wer, summarise } from '../../bench/asr_consistency_wer.mjs';
import { variation } from '../../bench/asr_consistency.mjs';

test('words are compared without case or punctuation', () => {
  assert.deepEqual(words("What is seven plus five? It's twelve."), ['what', 'is', 'seven', 'plus', 'five', "it's", 'twelve']);
  assert.deepEqual(words(''), []);
});

test('word error rate counts substitutions, deletions and insertions', () => {
  assert.deepEqual(wer('what is seven plus five', 'what is seven plus five'),
    { errors: 0, substitutions: 0, deletions: 0, insertions: 0, trailing: 0, refWords: 5, wer: 0 });
  const sub = wer('what is seven plus five', 'what is certain plus five');
  assert.equal(sub.substitutions, 1);
  assert.equal(sub.wer, 0.2);
  const del = wer('what is seven plus five', 'what seven plus five');
  assert.equal(del.deletions, 1);
  assert.equal(del.trailing, 0);
  assert.equal(wer('a b', '').wer, 1);
  assert.equal(wer('', 'a').wer, 1);
});

test('words added after the last word said are trailing insertions', () => {
  const w = wer('what is seven plus five', 'what is sheldon plus five m.');
  assert.equal(w.substitutions, 1);
  assert.equal(w.insertions, 1);
  assert.equal(w.trailing, 1);
  assert.equal(wer('seven plus five', 'uh seven plus five').trailing, 0); // a leading one is not
});

test('the summary pools runs and finds sentences that always read the same', () => {
  const r = (reference, hypothesis) => ({ reference, hypothesis });
  const s = summarise([
    [r('a b c d', 'a b c d'), r('a b c d', 'a b c d')],
    [r('e f g h', 'e f g h'), r('e f g h', 'e x g h m')],
  ]);
  assert.equal(s.sentences, 2);
  assert.equal(s.runs, 2);
  assert.equal(s.wer_mean, 2 / 16);
  assert.deepEqual(s.wer_per_run, [0, 2 / 8]);
  assert.equal(s.wer_worst_run, 0.25);
  assert.equal(s.wer_worst_call, 0.5);
  assert.equal(s.identical_fraction, 0.5);
  assert.equal(s.trailing_insertions, 1);
});

test('each run\'s variation is repeatable and within the stated ranges', () => {
  assert.deepEqual(variation(1, 3, 2), variation(1, 3, 2));
  assert.notDeepEqual(variation(1, 3, 2), variation(1, 3, 3));
  for (let k = 0; k < 50; k++) {
    const v = variation(7, k, k % 5);
    assert.ok(v.offsetMs >= 0 && v.offsetMs < 20);
    assert.ok(v.gain >= 0.9 && v.gain <= 1.1);
    assert.ok(v.lossPct >= 0 && v.lossPct <= 3);
    assert.ok(v.jitterMs >= 0 && v.jitterMs <= 30);
  }
});
