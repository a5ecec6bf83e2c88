// Faults a call must survive, with real calls (`tingshuo call`, the C
// WebRTC client) against the server, and each AI service played by its own
// fixture server (tests/fixtures/services/server.mjs) so one can fail while
// the others answer:
//   - a service down, too slow, answering garbage, cutting a reply off, and
//     answering 429 with Retry-After: the caller hears the apology (or the
//     part of the reply that came), the next turn works once the service is
//     back, a second call meanwhile is not held up, and nothing stays behind
//     (no call, no request in flight; the sanitizer build's clean exit at the
//     end means no leak);
//   - the caller vanishing mid-reply: the call ends after resume_timeout_ms,
//     its record is closed and its service requests are given up.
// SIGINT during calls and connection churn are in test_faults_server.mjs; SIGTERM's drain in test_drain.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { readdirSync, readlinkSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, tempDir, speechWav } from '../lib/harness.mjs';
import { placeCall as placeCallAt } from '../lib/call.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';

const TRANSCRIPT = 'what time is it';
const REPLY = 'Hello from the fixture. This is the second sentence.';
const APOLOGY = "Sorry, I can't answer right now. Please try again in a moment.";
const FIRST_BYTE_MS = 800;
const RESUME_MS = 1500;

// The caller's turns: one question each, TURN_S seconds apart (time for an
// apology after two timed-out attempts, well before the next question).
const TURN_S = 4.5;

const ctx = {};

// n questions in a row, each followed by silence up to TURN_S.
function questions(n) {
  const out = join(ctx.dir, `questions${n}.wav`);
  execFileSync('sox', [...Array(n).fill(ctx.question), out]);
  return out;
}

// `tingshuo call` against the server under test (tests/lib/call.mjs).
const placeCall = (wav, opts) => placeCallAt(ctx.srv.url, wav, opts);

const texts = (list) => list.map((r) => r.text);

// The server logged an error of `engine` (asr, llm, tts) whose detail matches `detail`
// (callers get a generic message; the detail goes to the log).
function assertLogged(engine, detail) {
  const re = new RegExp(`\\b${engine}\\b.*: ${detail}`);
  assert.ok(ctx.srv.stderr.split('\n').some((l) => / (warn|error) /.test(l) && re.test(l)),
    `no ${engine} error "${detail}" in the log:\n${ctx.srv.stderr}`);
}

// A GET on a connection of its own, closed after it (a kept-alive one would
// count among the server's open files).
function get(path) {
  return new Promise((resolve, reject) => {
    http.get(new URL(path, ctx.srv.url), { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(res.headers['content-type']?.includes('json') ? JSON.parse(body) : body));
    }).on('error', reject);
  });
}

// Sum of a metric's samples in /metrics (optionally only those whose labels match).
async function metric(name, labels = '') {
  const text = await get('/metrics');
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (labels && !line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

// The server's open files, except its connections to the services: those are
// libcurl's connection cache, which keeps, drops and reopens them as it sees fit.
function openFds() {
  const services = new Set([ctx.asr.port, ctx.llmPort, ctx.tts.port]);
  const toService = new Set();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = readFileSync(table, 'utf8'); } catch { continue; }
    for (const row of text.trim().split('\n').slice(1)) {
      const f = row.trim().split(/\s+/);
      if (services.has(parseInt(f[2].split(':')[1], 16))) toService.add(f[9]);
    }
  }
  const dir = `/proc/${ctx.srv.child.pid}/fd`;
  const fds = [];
  for (const fd of readdirSync(dir)) {
    let link = '';
    try { link = readlinkSync(`${dir}/${fd}`); } catch { continue; } // closed meanwhile
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (!inode || !toService.has(inode)) fds.push(`${fd} ${link}`);
  }
  return fds;
}

async function until(what, pred, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    if ((last = await pred())) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}: not within ${timeoutMs} ms`);
}

// Nothing of a finished test stays behind: no call, no request in flight.
async function assertQuiet() {
  await until('every call ended', async () => (await get('/healthz')).calls === 0);
  await until('no service request in flight', async () => (await metric('tingshuo_http_client_requests_in_flight')) === 0);
}

async function script(fx, cmd) {
  await fx.script({ reset: true, delayMs: null, retryAfter: 1, ...cmd });
}

// The fixtures' logs of chat requests, optionally only those of one call's system prompt.
async function chatRequests(pinnedOk = false) {
  return (await ctx.llm.log()).filter((e) => e.service === 'openai-chat' &&
    JSON.stringify(e.request?.messages ?? '').includes('[fixture:ok]') === pinnedOk);
}

before(async () => {
  ctx.dir = tempDir('tingshuo-faults-');
  ctx.question = speechWav(ctx.dir, 'q', 'What time is it?', { before: 0.3, after: 0 });
  const len = Number(execFileSync('soxi', ['-D', ctx.question], { encoding: 'utf8' }));
  const padded = join(ctx.dir, 'qpad.wav');
  execFileSync('sox', [ctx.question, padded, 'pad', '0', String(Math.max(0.5, TURN_S - len))]);
  ctx.question = padded;
  [ctx.asr, ctx.llm, ctx.tts] = await Promise.all([startFixture(), startFixture(), startFixture()]);
  ctx.llmPort = ctx.llm.port;
  ctx.srv = await startServer({
    args: ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0',
      '--asr', 'openai', '--asr-base-url', ctx.asr.v1,
      '--llm', 'openai', '--llm-base-url', ctx.llm.v1, '--llm-model', 'fixture-model',
      '--tts', 'openai', '--tts-base-url', ctx.tts.v1,
      '--http-first-byte-timeout-ms', String(FIRST_BYTE_MS), '--resume-timeout-ms', String(RESUME_MS),
      // Every sentence goes to the TTS fixture, so each test's scripted TTS faults are met.
      '--tts-cache-mb', '0', '--tts-cache-disk-mb', '0'],
    env: { OPENAI_API_KEY: 'sk-fixture-key-0123456789' },
  });
});

after(async () => {
  try {
    if (ctx.srv) await ctx.srv.stop(); // status 0: under the sanitizer build, no leak
  } finally {
    await Promise.all([ctx.asr, ctx.llm, ctx.tts].filter(Boolean).map((f) => f.stop()));
    rmSync(ctx.dir, { recursive: true, force: true });
  }
});

async function resetAll({ asr = [], llm = [], tts = [], ...rest } = {}) {
  await Promise.all([
    script(ctx.asr, { scenarios: asr, transcript: TRANSCRIPT }),
    script(ctx.llm, { scenarios: llm, reply: REPLY, ...rest }),
    script(ctx.tts, { scenarios: tts, toneMs: 300 }),
  ]);
}

test('an LLM service that is down: the apology, then the next turn once it is back', async () => {
  await resetAll();
  const fdsBefore = openFds();
  await ctx.llm.stop();
  let back = null;
  const ev = placeCall(questions(2), {
    onLine: (line, e) => {
      if (!back && e.replies.length === 1) back = startFixture({ port: ctx.llmPort }).then((f) => (ctx.llm = f));
    },
  });
  await ev.done;
  assert.ok(back, `no reply while the service was down:\n${ev.dump()}`);
  await back;
  assert.deepEqual(texts(ev.finals), [TRANSCRIPT, TRANSCRIPT], ev.dump());
  assert.deepEqual(texts(ev.replies), [APOLOGY, REPLY], ev.dump());
  assert.equal(ev.errors.length, 1, ev.dump());
  assertLogged('llm', 'OpenAI chat completions: could not connect');
  await assertQuiet();
  assert.deepEqual(openFds(), fdsBefore, 'open files other than service connections');
});

test('an LLM service too slow to answer: the apology after the first-byte timeout; another call is not held up', async () => {
  await resetAll({ llm: ['slow-first-byte', 'slow-first-byte'], delayMs: 3000 });
  const a = placeCall(questions(2));
  const b = placeCall(questions(2), { config: { system_prompt: 'You are brief. [fixture:ok]' } });
  await Promise.all([a.done, b.done]);
  assert.deepEqual(texts(a.replies), [APOLOGY, REPLY], a.dump());
  assert.equal(a.errors.length, 1, a.dump());
  assertLogged('llm', `OpenAI chat completions: no response within ${FIRST_BYTE_MS} ms`);
  // The other call's turns were answered at once while the first call's request hung.
  assert.deepEqual(texts(b.replies), [REPLY, REPLY], b.dump());
  assert.equal(b.errors.length, 0, b.dump());
  assert.ok(b.replies[0].at < a.replies[0].at, 'the other call answered before the slow one gave up');
  assert.ok(b.latency.length >= 1 && b.latency[0].llm_first_token < FIRST_BYTE_MS, `other call's first token: ${JSON.stringify(b.latency)}`);
  const slow = await chatRequests();
  assert.equal(slow.filter((e) => e.scenario === 'slow-first-byte').length, 2, 'one retry, then the apology');
  assert.ok(slow.filter((e) => e.scenario === 'slow-first-byte').every((e) => e.aborted), 'timed-out requests were given up');
  await assertQuiet();
});

test('garbage from each service: an error, the apology where there is a voice to say it, and the next turn works', async () => {
  // Turn 1: the first sentence's speech is an HTML page. Turn 2: the chat stream is not
  // JSON. Turn 3: the transcription is not JSON. Turn 4: all well.
  await resetAll({ tts: ['garbage'], llm: ['ok', 'garbage'], asr: ['ok', 'ok', 'garbage'] });
  const ev = placeCall(questions(4));
  await ev.done;
  assert.deepEqual(texts(ev.replies), [REPLY, APOLOGY, APOLOGY, REPLY], ev.dump());
  assert.equal(ev.errors.length, 3, ev.dump());
  assertLogged('tts', 'OpenAI speech: the response is text/html, not audio');
  assertLogged('llm', 'OpenAI chat completions: malformed stream');
  assertLogged('asr', 'OpenAI transcriptions: the response has no transcript');
  // The second sentence of turn 1 was still spoken.
  const speech = (await ctx.tts.log()).filter((e) => e.service === 'openai-speech');
  assert.equal(speech[0].scenario, 'garbage');
  assert.equal(speech[1].request.input, 'This is the second sentence.');
  await assertQuiet();
});

test('streams cut off mid-reply: the caller hears what came, and the next turn works', async () => {
  // Turn 1: the chat stream stops halfway. Turn 2: the first sentence's audio stops
  // halfway (turn 1's partial reply took two sentences). Turn 3: the transcription's
  // body stops after five bytes. Turn 4: all well.
  await resetAll({ llm: ['cutoff'], tts: ['ok', 'ok', 'cutoff'], asr: ['ok', 'ok', 'cutoff'] });
  const ev = placeCall(questions(4));
  await ev.done;
  const got = texts(ev.replies);
  assert.equal(got.length, 4, ev.dump());
  assert.ok(got[0].length > 0 && got[0] !== REPLY && REPLY.startsWith(got[0]), `partial reply "${got[0]}"`);
  assert.deepEqual(got.slice(1), [REPLY, APOLOGY, REPLY], ev.dump());
  assert.equal(ev.errors.length, 3, ev.dump());
  assertLogged('llm', 'OpenAI chat completions: the connection closed before the response ended');
  assertLogged('tts', 'OpenAI speech: the connection closed before the response ended');
  assertLogged('asr', 'OpenAI transcriptions: the connection closed before the response ended');
  const speech = (await ctx.tts.log()).filter((e) => e.service === 'openai-speech');
  assert.equal(speech[2].cutoff, true);
  assert.equal(speech[3].request.input, 'This is the second sentence.', 'the reply went on after the cut');
  await assertQuiet();
});

test('429 with Retry-After: the service is left alone until then; the caller hears the apology at once, or waits a little', async () => {
  // Retry-After 10 s, more than a request waits (3 s): turn 1 gets the apology. Turn 2,
  // 4.5 s later, is 5.5 s from the end of the window: refused without a request, at
  // once. Turn 3, 9 s after the 429, waits out the last second and is answered.
  await resetAll({ llm: ['429'], retryAfter: 10 });
  const ev = placeCall(questions(3));
  await ev.done;
  assert.deepEqual(texts(ev.replies), [APOLOGY, APOLOGY, REPLY], ev.dump());
  assert.equal(ev.errors.length, 2, ev.dump());
  assertLogged('llm', 'OpenAI chat completions: HTTP 429 \\(rate limited; retry after 10 s\\)');
  assertLogged('llm', 'OpenAI chat completions: rate limited; the service asked for no requests for another [4-6] s');
  const reqs = await chatRequests();
  assert.deepEqual(reqs.map((e) => e.scenario), ['429', 'ok'], 'no request inside the window');
  const apart = Number(BigInt(reqs[1].startNs) - BigInt(reqs[0].startNs)) / 1e6;
  assert.ok(apart >= 9950, `the next request came ${apart} ms after the 429`);
  // Refused without a round trip: the error follows the turn's transcript at once.
  const wait = ev.errors[1].at - ev.finals[1].at;
  assert.ok(wait < 300, `the refused turn's error came ${wait} ms after its transcript`);
  await assertQuiet();
});

test('the caller vanishes mid-reply: the call ends after resume_timeout_ms, its record is closed, its requests given up', async () => {
  await resetAll({ llm: ['slow-stream'], delayMs: 500 });
  const fdsBefore = openFds();
  let killedAt = 0;
  const ev = placeCall(questions(1), {
    onLine: (line) => {
      if (!killedAt && /\] state: speaking$/.test(line)) {
        killedAt = Date.now();
        ev.child.kill('SIGKILL');
      }
    },
  });
  await ev.done;
  assert.ok(killedAt, `the reply never started:\n${ev.dump()}`);
  const call = await until('the call record closed', async () => {
    const r = await get(`/api/calls/${ev.id}`);
    return r.call?.ended_at ? r.call : null;
  }, RESUME_MS + 5000);
  assert.equal(call.end_reason, 'resume timeout');
  const endedAfter = Date.now() - killedAt;
  assert.ok(endedAfter >= RESUME_MS - 100, `ended ${endedAfter} ms after the caller vanished`);
  // The reply being generated was given up when the call ended, not streamed to its end.
  const [chat] = await chatRequests();
  assert.equal(chat.scenario, 'slow-stream');
  await until('the service saw the request given up', async () => (await chatRequests())[0].aborted);
  await assertQuiet();
  assert.deepEqual(openFds(), fdsBefore, 'open files other than service connections');
});
