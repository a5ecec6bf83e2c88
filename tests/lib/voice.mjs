// Helpers for browser tests of the voice agent: what the page receives on
// its WebSocket, both audio directions on one clock, and speech
// recognition of what the browser heard; and a call placed with all of
// that in place.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openPage, waitInCall } from './harness.mjs';

// The server as a voice agent that never prompts or hangs up on a quiet
// caller, so a test's own timing decides the call.
export const VOICE_AGENT_ARGS = ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0'];

// Before any page script: record every message the server sends, and every
// RTCPeerConnection made, so tests need nothing from the page's own code.
export async function instrument(context) {
  await context.addInitScript(() => {
    window.__events = [];
    window.__pcs = [];
    const NativeWS = window.WebSocket;
    window.WebSocket = class extends NativeWS {
      constructor(...args) {
        super(...args);
        this.addEventListener('message', (ev) => {
          try { window.__events.push({ at: performance.now(), ...JSON.parse(ev.data) }); } catch { /* not JSON */ }
        });
      }
    };
    const NativePC = window.RTCPeerConnection;
    window.RTCPeerConnection = class extends NativePC {
      constructor(...args) { super(...args); window.__pcs.push(this); }
    };
  });
}

export async function events(page, type) {
  const all = await page.evaluate(() => window.__events);
  return type ? all.filter((e) => e.type === type) : all;
}

export async function waitForEvent(page, predicate, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const found = (await events(page)).find(predicate);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no matching event within ${timeoutMs} ms: ${predicate}`);
}

// Records the microphone (channel 0) and the remote audio (channel 1) through one
// AudioContext, so both are on the same timeline.
export async function startDuplexRecorder(page) {
  await page.evaluate(async () => {
    const pc = window.__pcs[window.__pcs.length - 1];
    const mic = pc.getSenders().find((s) => s.track && s.track.kind === 'audio').track;
    const remote = pc.getReceivers().find((r) => r.track && r.track.kind === 'audio').track;
    const ctx = new AudioContext();
    const merger = ctx.createChannelMerger(2);
    ctx.createMediaStreamSource(new MediaStream([mic])).connect(merger, 0, 0);
    ctx.createMediaStreamSource(new MediaStream([remote])).connect(merger, 0, 1);
    const proc = ctx.createScriptProcessor(4096, 2, 1);
    const rec = { ctx, rate: ctx.sampleRate, mic: [], remote: [] };
    proc.onaudioprocess = (e) => {
      rec.mic.push(Array.from(e.inputBuffer.getChannelData(0)));
      rec.remote.push(Array.from(e.inputBuffer.getChannelData(1)));
    };
    merger.connect(proc);
    proc.connect(ctx.destination);
    window.__duplex = rec;
  });
}

export async function stopDuplexRecorder(page) {
  const r = await page.evaluate(() => {
    const rec = window.__duplex;
    rec.ctx.close();
    return { rate: rec.rate, mic: rec.mic.flat(), remote: rec.remote.flat() };
  });
  return { rate: r.rate, mic: Float32Array.from(r.mic), remote: Float32Array.from(r.remote) };
}

// Opens the page with instrument()'s hooks in place (the reload runs them
// before the page's scripts), calls, and once the call is up records both
// directions. Returns what openPage() returns.
export async function startRecordedCall(browser, url) {
  const opened = await openPage(browser, url);
  await instrument(opened.context);
  await opened.page.reload();
  await opened.page.waitForSelector('#status[data-state="ready"]');
  await opened.page.click('#call');
  await waitInCall(opened.page);
  await startDuplexRecorder(opened.page);
  return opened;
}

// Writes float samples as a 16 kHz 16-bit WAV (sox does the rate change).
export function writeWav16k(dir, name, samples, rate) {
  const raw = join(dir, `${name}.f32.wav`), out = join(dir, `${name}.wav`);
  const b = Buffer.alloc(44 + samples.length * 2);
  b.write('RIFF', 0); b.writeUInt32LE(36 + samples.length * 2, 4); b.write('WAVEfmt ', 8);
  b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22); b.writeUInt32LE(rate, 24);
  b.writeUInt32LE(rate * 2, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34);
  b.write('data', 36); b.writeUInt32LE(samples.length * 2, 40);
  for (let i = 0; i < samples.length; i++) b.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32767))), 44 + i * 2);
  writeFileSync(raw, b);
  // Leading and trailing digital silence is cut: pocketsphinx_continuous calibrates its own
  // silence detector on the first frames and misses speech after a long stretch of zeros.
  execFileSync('sox', [raw, '-r', '16000', '-c', '1', '-b', '16', out,
    'silence', '1', '0.05', '0.5%', 'reverse', 'silence', '1', '0.05', '0.5%', 'reverse', 'norm', '-3', 'pad', '0.3', '0.3']);
  return out;
}

// What pocketsphinx hears in a 16 kHz WAV, lower case.
export function transcribe(wav) {
  const out = execFileSync('pocketsphinx_continuous', ['-infile', wav, '-logfn', '/dev/null'],
    { encoding: 'utf8', timeout: 120000 });
  return out.split('\n').map((l) => l.trim()).filter(Boolean).join(' ').toLowerCase();
}

// Share of the words of `expected` that appear in `heard`.
export function wordOverlap(expected, heard) {
  const words = (s) => s.toLowerCase().replace(/[^a-z' ]/g, ' ').split(/\s+/).filter((w) => w.length > 1);
  const want = words(expected), got = new Set(words(heard));
  if (!want.length) return 0;
  return want.filter((w) => got.has(w)).length / want.length;
}
