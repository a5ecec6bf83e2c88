// Word error rate, and the parts of it the consistency bench reports.
//
// Both texts are normalised the same way (lower case, apostrophes kept
// inside words, every other punctuation mark a space), then aligned by a
// Levenshtein distance over words. Among alignments of equal cost the one
// that matches a word rather than substituting it is preferred, so a
// trailing extra word ("... five m") is counted as an insertion at the end,
// which is what `trailing` reports: words the recogniser added after the
// last word of the reference.

export function words(text) {
  return String(text ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9' ]+/g, ' ')
    .replace(/(^|\s)'+|'+(?=\s|$)/g, ' ')
    .split(/\s+/)
    .filter(Boolean);
}

// {errors, substitutions, deletions, insertions, trailing, refWords, wer}
export function wer(reference, hypothesis) {
  const r = words(reference), h = words(hypothesis);
  const n = r.length, m = h.length;
  // d[i][j]: cost of r[0..i) against h[0..j)
  const d = Array.from({ length: n + 1 }, (_, i) => {
    const row = new Array(m + 1).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j <= m; j++) d[0][j] = j;
  for (let i = 1; i <= n; i++)
    for (let j = 1; j <= m; j++)
      d[i][j] = Math.min(d[i - 1][j - 1] + (r[i - 1] === h[j - 1] ? 0 : 1), d[i - 1][j] + 1,
        d[i][j - 1] + 1);
  // Walk back to count the kinds of error.
  let i = n, j = m, sub = 0, del = 0, ins = 0, trailing = 0, matchedEnd = false;
  while (i > 0 || j > 0) {
    if (i > 0 && j > 0 && d[i][j] === d[i - 1][j - 1] + (r[i - 1] === h[j - 1] ? 0 : 1)) {
      if (r[i - 1] !== h[j - 1]) sub++;
      i--; j--;
      matchedEnd = true;
    } else if (j > 0 && d[i][j] === d[i][j - 1] + 1) {
      ins++;
      if (!matchedEnd && i === n) trailing++;
      j--;
    } else {
      del++;
      i--;
      matchedEnd = true;
    }
  }
  const errors = sub + del + ins;
  return { errors, substitutions: sub, deletions: del, insertions: ins, trailing, refWords: n,
    wer: n ? errors / n : (m ? 1 : 0) };
}

// Summary over a grid of runs: results[s][k] = {reference, hypothesis} for
// sentence s, run k. Per-pass WER pools every sentence of run k.
export function summarise(results) {
  const sentences = results.length, runs = Math.max(0, ...results.map((r) => r.length));
  let identical = 0, trailingRuns = 0, worstCall = 0, errors = 0, refWords = 0;
  const passErr = new Array(runs).fill(0), passRef = new Array(runs).fill(0);
  for (const row of results) {
    const texts = row.map((x) => words(x.hypothesis).join(' '));
    if (texts.length && texts.every((t) => t === texts[0])) identical++;
    row.forEach((x, k) => {
      const w = wer(x.reference, x.hypothesis);
      x.wer = w.wer;
      x.trailing = w.trailing;
      if (w.trailing) trailingRuns++;
      if (w.wer > worstCall) worstCall = w.wer;
      errors += w.errors;
      refWords += w.refWords;
      passErr[k] += w.errors;
      passRef[k] += w.refWords;
    });
  }
  const passWer = passErr.map((e, k) => (passRef[k] ? e / passRef[k] : 0));
  return {
    sentences, runs,
    wer_mean: refWords ? errors / refWords : 0,
    wer_worst_run: passWer.length ? Math.max(...passWer) : 0,
    wer_per_run: passWer,
    wer_worst_call: worstCall,
    identical_fraction: sentences ? identical / sentences : 0,
    trailing_insertions: trailingRuns,
  };
}
