// Firefox for the browser tests: Debian's firefox-esr, headless, driven by
// puppeteer-core over WebDriver BiDi.
//
// The preferences keep it off the network (no updates, telemetry, plugin
// downloads or connectivity probes) and give it a fake microphone that
// needs no permission prompt. They leave every ICE preference at its
// default on purpose: Firefox gathers no loopback candidates and pairs
// none, and the browser tests must show that a server with its default
// settings is reachable anyway.
//
// Firefox's fake microphone is a steady 1 kHz tone, and the echo agent
// answers only once the caller pauses. speakInPage() therefore replaces
// the stream the page gets with a sentence (and the silence after it)
// played in a loop, while the page still opens the fake device as a real
// call would. What the page hears is recorded with MediaRecorder (Ogg
// Opus) and decoded here with opusdec.
//
// A test machine has no sound card, and a developer's must not matter:
// media.cubeb.force_null_context runs Firefox's media graph on a system-
// clock driver, which keeps real time. (cubeb's mock context would let
// WebAudio run too, but it falls behind real time by several per cent and
// the page then sends too few packets.) Without an audio device no
// AudioContext ever starts, so nothing here uses WebAudio: the sentence
// comes from a media element's captured stream, the recording from
// MediaRecorder.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readWav } from './harness.mjs';

export const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.cubeb.force_null_context': true,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  'media.gmp-gmpopenh264.enabled': false,
  'media.gmp-gmpopenh264.autoupdate': false,
  'media.gmp-manager.url': '',
  'network.connectivity-service.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.dns.disablePrefetch': true,
  'network.prefetch-next': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'browser.safebrowsing.downloads.enabled': false,
  'datareporting.healthreport.uploadEnabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.enabled': false,
  'app.update.auto': false,
  'app.normandy.enabled': false,
  'extensions.update.enabled': false,
  'browser.region.network.url': '',
  'browser.search.update': false,
};

// Starts firefox-esr (FIREFOX overrides the path). Every BiDi command gives
// up after 30 s, so a browser that stops answering fails the test instead
// of holding it until CTest's timeout.
export async function launchFirefox({ prefs = {} } = {}) {
  const { default: puppeteer } = await import('puppeteer-core');
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
    protocol: 'webDriverBiDi',
    headless: true,
    timeout: 60000,
    protocolTimeout: 30000,
    extraPrefsFirefox: { ...FIREFOX_PREFS, ...prefs },
  });
}

// Closes the browser; one that has not closed within 10 s is killed, so a
// test never waits on it.
export async function closeFirefox(browser) {
  const proc = browser.process();
  let timer;
  const late = new Promise((r) => { timer = setTimeout(r, 10000, 'late'); });
  const how = await Promise.race([browser.close().then(() => 'closed', () => 'failed'), late]);
  clearTimeout(timer);
  if (how !== 'closed' && proc) proc.kill('SIGKILL');
}

// A new page at `url`. init: a function (and its arguments) to run in the
// page before its own scripts. Console errors and uncaught exceptions are
// kept for assertNoErrors().
export async function openFirefoxPage(browser, url, { init } = {}) {
  const page = await browser.newPage();
  const errors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(`console: ${msg.text()}`); });
  page.on('pageerror', (err) => errors.push(`exception: ${err.message}`));
  if (init) await page.evaluateOnNewDocument(init.fn, ...(init.args || []));
  await page.goto(url);
  return {
    page,
    errors,
    assertNoErrors() { assert.deepEqual(errors, [], `the page reported errors:\n${errors.join('\n')}`); },
  };
}

// The init for openFirefoxPage that makes getUserMedia return `wav` (a
// speechWav() file), looping.
export function speakInPage(wav) {
  return { fn: replaceMicrophone, args: [readFileSync(wav).toString('base64')] };
}

// Runs in the page. The fake device is opened and kept (so the page holds
// a capture, as with a real microphone); the stream returned plays the file.
function replaceMicrophone(b64) {
  const devices = navigator.mediaDevices;
  const open = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (constraints) => {
    window.__fakeDevice = await open(constraints);
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const el = new Audio(URL.createObjectURL(new Blob([bytes], { type: 'audio/wav' })));
    el.loop = true;
    const stream = el.mozCaptureStream();
    await el.play();
    window.__speech = el;
    return stream;
  };
}

// Records what the page's remote audio element receives for `ms`; returns
// {rate, samples: Float32Array}, decoded into `dir`.
export async function recordRemote(page, ms, dir) {
  await page.evaluate(() => {
    const rec = new MediaRecorder(document.getElementById('remote').srcObject,
      { mimeType: 'audio/ogg; codecs=opus' });
    window.__remoteRecorder = { rec, chunks: [] };
    rec.ondataavailable = (e) => window.__remoteRecorder.chunks.push(e.data);
    rec.start(1000);
  });
  await new Promise((r) => setTimeout(r, ms));
  const b64 = await page.evaluate(async () => {
    const { rec, chunks } = window.__remoteRecorder;
    const stopped = new Promise((r) => { rec.onstop = r; });
    rec.stop();
    await stopped;
    const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(bin);
  });
  const ogg = join(dir, 'received.ogg'), wav = join(dir, 'received.wav');
  writeFileSync(ogg, Buffer.from(b64, 'base64'));
  execFileSync('opusdec', ['--quiet', '--rate', '48000', ogg, wav]);
  return readWav(wav);
}

// The pair Firefox's ICE chose: {local, remote} candidates from getStats().
export async function selectedPair(page) {
  return page.evaluate(async () => {
    const stats = await window.tingshuo.pc.getStats();
    let pair = null;
    stats.forEach((s) => { if (s.type === 'candidate-pair' && s.state === 'succeeded' && (s.selected || s.nominated)) pair = s; });
    if (!pair) return null;
    const c = (id) => { const s = stats.get(id); return s && { address: s.address, port: s.port, type: s.candidateType }; };
    return { local: c(pair.localCandidateId), remote: c(pair.remoteCandidateId) };
  });
}
