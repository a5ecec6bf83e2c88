#!/usr/bin/env node
// The recognition consistency bench: does the same audio give the same words?
//
//   node bench/asr_consistency.mjs [--bin build/tingshuo] [--runs 5] [--sentences N]
//        [--parallel 3] [--out FILE.json] [--label TEXT] [--dump DIR] [--seed N]
//        [--serve-arg --KEY --serve-arg VALUE ...]
//
// Each sentence below is synthesised once (flite and espeak-ng English
// voices, in turn), given a quiet noise floor (-60 dBFS white noise, fixed
// per sentence) and half a second of it before the speech, and played
// `runs` times through the whole media path: `tingshuo call` sends it as a
// browser would (Opus, RTP, SRTP) to a `tingshuo serve` whose recogniser is
// pocketsphinx, through its jitter buffer, echo canceller, VAD and
// endpointing. Every run differs the way calls differ: the speech starts
// anywhere within a 20 ms frame, its level is within +-10 %, 0-3 % of the
// packets are lost and each is held back 0-30 ms. The variation of run k of
// a sentence depends only on the sentence, k and --seed, so two builds see
// the same calls. Runs are interleaved (run 1 of every sentence, then run
// 2...) and a few calls go at once, so each utterance meets a decoder that
// last heard some other call, as on a busy server.
//
// The server answers with the `fixed` LLM and the `tone` TTS, no greeting
// and no idle prompt: the reply starts only after the final transcript and
// is a tone, so it neither overlaps the caller nor costs recognition time.
//
// Printed and written as JSON: WER over all runs (mean), per pass over the
// set (worst run), the worst single call, the fraction of sentences whose
// transcript was identical in every run, and how many calls ended with
// words the speaker never said (trailing insertions).
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summarise } from './asr_consistency_wer.mjs';

const here = dirname(fileURLToPath(import.meta.url));

export const SENTENCES = [
  'my order number is four five two one',
  'please send the invoice to john smith',
  'i would like to book a table for three people',
  'can you call me back tomorrow morning',
  'the meeting has been moved to friday afternoon',
  'my account number is seven eight nine zero',
  'i need to change my delivery address',
  'the package arrived yesterday but it was damaged',
  'could you tell me the price of the blue jacket',
  'my name is sarah johnson',
  'i want to cancel my subscription',
  'please transfer one hundred dollars to my savings account',
  'the train leaves at half past six',
  'i have been waiting for twenty minutes',
  'can i speak to the manager please',
  'we need two large pizzas and a salad',
  'my phone number is five five five one two three four',
  'the flight to london was delayed by two hours',
  'please remind me to buy milk on the way home',
  'i lost my credit card this morning',
  'how much does it cost to ship a parcel to canada',
  'my appointment is on the third of march',
  'the doctor said i should rest for a week',
  'send a message to david saying i will be late',
];

export const VOICES = [
  { engine: 'flite', voice: 'slt' }, { engine: 'espeak-ng', voice: 'en-us' },
  { engine: 'flite', voice: 'kal' }, { engine: 'espeak-ng', voice: 'en' },
  { engine: 'flite', voice: 'awb' }, { engine: 'flite', voice: 'rms' },
];

function parseArgs(argv) {
  const o = { bin: resolve(here, '../build/tingshuo'), runs: 5, sentences: SENTENCES.length,
    parallel: 3, out: '', label: '', dump: '', seed: 1, serveArgs: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    if (a === '--bin') o.bin = resolve(v);
    else if (a === '--runs') o.runs = Number(v);
    else if (a === '--sentences') o.sentences = Number(v);
    else if (a === '--parallel') o.parallel = Number(v);
    else if (a === '--out') o.out = v;
    else if (a === '--label') o.label = v;
    else if (a === '--dump') o.dump = resolve(v);
    else if (a === '--seed') o.seed = Number(v);
    else if (a === '--serve-arg') o.serveArgs.push(v);
    else throw new Error(`unknown argument ${a}`);
    i++;
  }
  for (const k of ['runs', 'sentences', 'parallel', 'seed'])
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new Error(`--${k}: a whole number >= 1`);
  o.sentences = Math.min(o.sentences, SENTENCES.length);
  return o;
}

// A small deterministic generator (mulberry32), so a run's variation is repeatable.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function variation(seed, sentence, run) {
  const r = rng(seed * 1000003 + sentence * 7919 + run * 104729);
  return { offsetMs: +(r() * 20).toFixed(2), gain: +(0.9 + r() * 0.2).toFixed(3),
    lossPct: +(r() * 3).toFixed(2), jitterMs: Math.round(r() * 30),
    seed: 1 + Math.floor(r() * 1e9) };
}

export function synthesise(dir, i, text) {
  const v = VOICES[i % VOICES.length];
  const raw = join(dir, `s${i}.raw.wav`), speech = join(dir, `s${i}.speech.wav`);
  const noise = join(dir, `s${i}.noise.wav`), wav = join(dir, `s${i}.wav`);
  if (v.engine === 'flite') execFileSync('flite', ['-voice', v.voice, '-t', text, '-o', raw]);
  else execFileSync('espeak-ng', ['-v', v.voice, '-w', raw, text]);
  // 16 kHz mono, 0.5 s before the speech and 0.3 s after, over a quiet noise floor.
  execFileSync('sox', [raw, '-r', '16000', '-c', '1', '-b', '16', speech, 'pad', '0.5', '0.3']);
  const secs = execFileSync('soxi', ['-D', speech]).toString().trim();
  execFileSync('sox', ['-R', '-n', '-r', '16000', '-c', '1', '-b', '16', noise, 'synth', secs,
    'whitenoise', 'vol', '0.001']);
  execFileSync('sox', ['-m', speech, noise, wav]);
  return { wav, voice: `${v.engine}:${v.voice}` };
}

function startServer(o, dataDir, logPath) {
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--llm', 'fixed',
    '--tts', 'tone', '--asr', 'pocketsphinx', '--greeting', '', '--idle-prompt-ms', '0',
    '--idle-hangup-ms', '0', '--log-level', 'debug', ...o.serveArgs];
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('TINGSHUO_')) delete env[k];
  if (o.dump) env.TS_ASR_DUMP = o.dump;
  const child = spawn(o.bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const orphan = () => child.kill('SIGKILL');
  process.on('exit', orphan);
  let out = '', log = '';
  child.stderr.on('data', (d) => { log += d; });
  const url = new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`the server did not start:\n${log}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /open (http:\/\/\S+) in a browser/.exec(out);
      if (m) { clearTimeout(t); res(m[1]); }
    });
    child.on('exit', (c) => { clearTimeout(t); rej(new Error(`the server exited (${c}):\n${log}`)); });
  });
  return { child, url, stop: async () => {
    const done = new Promise((r) => child.on('exit', r));
    child.kill('SIGTERM');
    await done;
    process.off('exit', orphan);
    writeFileSync(logPath, log);
  } };
}

function call(o, url, wav, v) {
  const args = ['call', url, '--play', wav, '--timeout', '40', '--offset-ms', String(v.offsetMs),
    '--gain', String(v.gain), '--loss', String(v.lossPct), '--jitter', String(v.jitterMs),
    '--seed', String(v.seed)];
  return new Promise((res) => {
    const child = spawn(o.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.on('error', (e) => res({ code: -1, finals: [], hypothesis: '', stderr: e.message, call: '' }));
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => {
      const finals = [...out.matchAll(/transcript \(final\): "(.*)"$/gm)].map((m) => m[1]);
      const id = /"call_id":"([^"]+)"|call ([0-9a-f-]{8,})/.exec(out);
      res({ code, finals, hypothesis: finals.join(' '), stderr: err.trim(), call: id?.[1] ?? id?.[2] ?? '' });
    });
  });
}

async function pool(jobs, parallel, fn) {
  let next = 0;
  const worker = async () => { while (next < jobs.length) await fn(jobs[next++]); };
  await Promise.all(Array.from({ length: parallel }, worker));
}

export async function bench(o, print = console.log) {
  const dir = mkdtempSync(join(tmpdir(), 'asr-consistency-'));
  try {
    if (o.dump) mkdirSync(o.dump, { recursive: true });
    // A copy of the binary: a rebuild meanwhile must not pull it from under the calls.
    const bin = join(dir, 'tingshuo');
    copyFileSync(o.bin, bin);
    chmodSync(bin, 0o755);
    o = { ...o, bin };
    const set = SENTENCES.slice(0, o.sentences).map((text, i) => ({ text, ...synthesise(dir, i, text) }));
    const srv = startServer(o, join(dir, 'data'), join(o.dump || dir, 'server.log'));
    const url = await srv.url;
    const results = set.map(() => []);
    const jobs = [];
    for (let k = 0; k < o.runs; k++) for (let s = 0; s < set.length; s++) jobs.push({ s, k });
    let failed = 0;
    await pool(jobs, o.parallel, async ({ s, k }) => {
      const v = variation(o.seed, s, k);
      const r = await call(o, url, set[s].wav, v);
      if (r.code !== 0) failed++;
      results[s][k] = { reference: set[s].text, hypothesis: r.hypothesis, utterances: r.finals.length,
        exit: r.code, call: r.call, variation: v };
      if (r.code !== 0 && print) print(`  call failed (sentence ${s}, run ${k}): ${r.stderr}`);
    });
    await srv.stop();
    const sum = summarise(results);
    const report = { label: o.label, date: new Date().toISOString(), seed: o.seed, failed_calls: failed,
      ...sum, sentences: set.map((x, s) => ({ text: x.text, voice: x.voice, runs: results[s] })) };
    if (print) {
      for (const [s, x] of report.sentences.entries()) {
        const distinct = [...new Set(x.runs.map((r) => r.hypothesis))];
        if (distinct.length > 1 || distinct[0] !== x.text)
          print(`  [${s}] ${x.voice} "${x.text}"\n${distinct.map((d) => `        -> "${d}"`).join('\n')}`);
      }
      print(`${o.label ? o.label + ': ' : ''}${sum.sentences} sentences x ${sum.runs} runs` +
        `${failed ? `, ${failed} calls failed` : ''}\n` +
        `  WER mean ${(100 * sum.wer_mean).toFixed(1)} %, worst run ${(100 * sum.wer_worst_run).toFixed(1)} %` +
        ` (per run: ${sum.wer_per_run.map((w) => (100 * w).toFixed(1)).join(', ')}),` +
        ` worst call ${(100 * sum.wer_worst_call).toFixed(1)} %\n` +
        `  identical in every run: ${(100 * sum.identical_fraction).toFixed(0)} % of sentences\n` +
        `  trailing insertions: ${sum.trailing_insertions} calls`);
    }
    if (o.out) writeFileSync(o.out, JSON.stringify(report, null, 2) + '\n');
    return report;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  bench(parseArgs(process.argv.slice(2))).catch((e) => { console.error(`asr_consistency: ${e.message}`); process.exit(1); });
}
