#!/usr/bin/env node
// Decodes again, offline, the utterances a consistency bench run dumped
// (bench/asr_consistency.mjs --dump DIR), with bench/asr_consistency_decode
// and whatever options are given, and summarises them as the bench does.
// It separates what the audio did from what the decoder did: the same dumped
// audio decoded with a fresh decoder state gives the transcript the audio
// alone decides.
//
//   node bench/asr_consistency_redecode.mjs RESULT.json DUMPDIR DECODER [OPTIONS...]
//
// The dumps are decoded in the order the server finished them (the number
// in their names), one decoder for all, so options that keep state between
// utterances see a history like the server's.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { summarise } from './asr_consistency_wer.mjs';

const [resultPath, dumpDir, decoder, ...opts] = process.argv.slice(2);
if (!decoder) {
  console.error('usage: asr_consistency_redecode.mjs RESULT.json DUMPDIR DECODER [OPTIONS...]');
  process.exit(2);
}
const report = JSON.parse(readFileSync(resultPath, 'utf8'));
const where = new Map(); // call id -> [sentence, run]
report.sentences.forEach((x, s) => x.runs.forEach((r, k) => where.set(r.call, [s, k])));
const dumps = readdirSync(dumpDir).filter((f) => /^utt-.*\.wav$/.test(f))
  .sort((a, b) => Number(/(\d+)\.wav$/.exec(a)[1]) - Number(/(\d+)\.wav$/.exec(b)[1]));
const out = execFileSync(decoder, [...opts, ...dumps.map((f) => join(dumpDir, f))],
  { maxBuffer: 1 << 24 }).toString();
const grid = report.sentences.map(() => []);
for (const line of out.trim().split('\n')) {
  const [path, , hyp] = line.split('\t');
  const call = /utt-(.+)-\d+\.wav$/.exec(path)[1];
  const at = where.get(call);
  if (!at) continue;
  const [s, k] = at;
  const cell = grid[s][k] ??= { reference: report.sentences[s].text, hypothesis: '' };
  cell.hypothesis = cell.hypothesis ? `${cell.hypothesis} ${hyp}` : hyp; // a call split in two utterances
}
for (const row of grid) for (let k = 0; k < report.runs; k++)
  row[k] ??= { reference: row.find(Boolean)?.reference ?? '', hypothesis: '' };
const sum = summarise(grid);
console.log(`${opts.join(' ') || '(defaults)'}: WER mean ${(100 * sum.wer_mean).toFixed(1)} %, ` +
  `worst run ${(100 * sum.wer_worst_run).toFixed(1)} %, identical ${(100 * sum.identical_fraction).toFixed(0)} %, ` +
  `trailing insertions ${sum.trailing_insertions}`);
if (process.env.VERBOSE)
  grid.forEach((row, s) => console.log(`[${s}] ${row[0].reference}\n${row.map((c) => `    -> ${c.hypothesis}`).join('\n')}`));
