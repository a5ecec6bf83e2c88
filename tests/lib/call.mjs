// `tingshuo call` as a test's caller: runs the C client against a server and
// collects the events it prints (one per line, "[  secs] what: detail"),
// parsed, with the wall-clock time each line arrived.
import { spawn } from 'node:child_process';
import { BIN } from './harness.mjs';

// "latency turn 1: voice_to_voice 650 ms, endpoint 600 ms, ..., tts cached"
function parseLatency(turn, rest) {
  const figures = { turn: Number(turn), cached: /(?:^|, )tts cached$/.test(rest) };
  for (const m of rest.matchAll(/(\w+) (-?\d+(?:\.\d+)?) ms/g)) figures[m[1]] = Number(m[2]);
  return figures;
}

// url: the server's http:// or ws:// address. config: per-call settings.
// onLine(line, ev) sees every line as it comes.
export function placeCall(url, wav, { config, token, timeoutS = 90, onLine = () => {} } = {}) {
  const args = ['call', url, '--play', wav, '--timeout', String(timeoutS)];
  if (config) args.push('--config', JSON.stringify(config));
  if (token) args.push('--token', token);
  const child = spawn(BIN, args);
  const ev = { id: null, finals: [], replies: [], errors: [], latency: [], usage: [], ends: [],
    lines: [], stdout: '', stderr: '', child };
  let buf = '';
  const parse = (line, at) => {
    let m;
    if ((m = /\] answer: call ([0-9a-f]+)$/.exec(line))) ev.id = m[1];
    if ((m = /\] transcript \(final\): "(.*)"$/.exec(line))) ev.finals.push({ at, text: m[1] });
    if ((m = /\] reply( \(interrupted\))?: "(.*)"$/.exec(line))) ev.replies.push({ at, text: m[2], interrupted: !!m[1] });
    if ((m = /\] error engine: (.*)$/.exec(line))) ev.errors.push({ at, text: m[1] });
    if ((m = /\] latency turn (\d+):(.*)$/.exec(line))) ev.latency.push({ at, ...parseLatency(m[1], m[2]) });
    if ((m = /\] usage: (\{.*\})$/.exec(line))) ev.usage.push({ at, ...JSON.parse(m[1]) });
    if ((m = /\] end: (.*)$/.exec(line))) ev.ends.push(m[1]);
  };
  child.stdout.on('data', (d) => {
    ev.stdout += d;
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl), at = Date.now();
      buf = buf.slice(nl + 1);
      ev.lines.push({ at, line });
      parse(line, at);
      onLine(line, ev);
    }
  });
  child.stderr.on('data', (d) => { ev.stderr += d; });
  ev.done = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  ev.dump = () => `stdout:\n${ev.stdout}\nstderr:\n${ev.stderr}`;
  return ev;
}
