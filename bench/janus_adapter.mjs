#!/usr/bin/env node
// Janus behind tingshuo's signaling protocol, so one load client can drive both.
//
// The benchmark compares tingshuo with Janus's AudioBridge plugin under the
// same load from the same client (`tingshuo bench`). That client speaks
// tingshuo's protocol (docs/protocol.md): a WebSocket at /ws carrying JSON
// `offer` -> `answer` {sdp, call_id}, `hangup`, `end`, `error`. This adapter
// accepts exactly that and turns each call into Janus HTTP API requests:
//
//   offer   -> attach janus.plugin.audiobridge (one handle per call),
//              `create` a private room (mixing at --rate, default 16 kHz,
//              the rate tingshuo's voice agent hears at; no recording),
//              `join` it with the offer as jsep, wait for the `joined` event
//              carrying the answer, then `play_file` into the room
//   answer  <- that jsep, with call_id "janus-<handle>"
//   connected <- Janus's `webrtcup`
//   ice-candidate -> `trickle` on the handle (browsers trickle; the bench
//              client puts its candidates in the offer)
//   hangup / WebSocket closed -> `destroy` the room, `detach` the handle
//   end     <- Janus's `hangup` (ICE failed, DTLS alert, ...)
//
// Why a played file: AudioBridge never sends a participant its own voice, and
// each room holds one caller, so on its own the caller would hear only
// silence. `play_file` (with `loop`) adds an Ogg Opus file as a second,
// virtual source in the room. Every 20 ms the room's mixer then decodes the
// caller's Opus (for the mix, and for anyone else in the room), decodes the
// file, mixes, and encodes a frame for the caller: one Opus decode and one
// encode per call, like tingshuo's path (decode for VAD/ASR, encode the
// synthesised reply), plus the file's decode. The file should be speech-like
// so the encoder works as hard as it does on a reply. Without --play the
// caller hears the encoded silence of an empty mix.
//
// One Janus session serves all calls, with one long-poll loop (GET
// /janus/<session>?maxev=N) dispatching events to calls by handle id and one
// keepalive timer; a session per call would add a long-poll connection, and a
// Janus HTTP thread, per call to Janus's cost.
//
// The WebSocket server is written here (RFC 6455, server side): node 20 has no
// built-in one and the bench must not depend on npm packages. It handles what
// the protocol needs: text messages (fragmented or not), ping, close; binary
// frames close with 1003, messages over 256 KiB with 1009, invalid UTF-8 with
// 1007, protocol violations with 1002. With --web DIR it also serves the
// static page from DIR, so a browser can place a call through Janus.
//
// Below 48 kHz the answer also tells the caller what the room hears: when
// Janus's answer has no `maxplaybackrate` on its Opus line, the adapter adds
// the room's rate (RFC 7587), as tingshuo's own answer does, so the caller
// codes the same band for both servers and each decodes the same stream.
//
// usage: node bench/janus_adapter.mjs [--listen HOST:PORT] [--janus URL]
//          [--rate HZ] [--play FILE.opus] [--web DIR] [--max-calls N] [--verbose]
// It prints "listening on http://HOST:PORT/" once ready.
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve, join, extname, sep } from 'node:path';

// --- options -------------------------------------------------------------

function parseArgs(argv) {
  const opts = { listen: '127.0.0.1:0', janus: 'http://127.0.0.1:8088/janus', play: null, web: null,
    maxCalls: 0, verbose: false, rate: 16000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) die(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--listen') opts.listen = value();
    else if (a === '--janus') opts.janus = value().replace(/\/$/, '');
    else if (a === '--play') opts.play = resolve(value());
    else if (a === '--web') opts.web = resolve(value());
    else if (a === '--max-calls') opts.maxCalls = Number.parseInt(value(), 10);
    else if (a === '--rate') opts.rate = Number(value());
    else if (a === '--verbose') opts.verbose = true;
    else die(`unknown option ${a}`);
  }
  const m = /^(.*):(\d+)$/.exec(opts.listen);
  if (!m) die(`--listen wants HOST:PORT, got ${opts.listen}`);
  opts.host = m[1] || '127.0.0.1';
  opts.port = Number(m[2]);
  if (!(opts.maxCalls >= 0)) die('--max-calls wants a number');
  if (![8000, 12000, 16000, 24000, 48000].includes(opts.rate)) die('--rate is one of 8000 12000 16000 24000 48000');
  return opts;
}

function die(msg) {
  process.stderr.write(`janus_adapter: ${msg}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const log = (...a) => process.stderr.write(`janus_adapter: ${a.join(' ')}\n`);
const debug = (...a) => { if (opts.verbose) log(...a); };

// --- Janus HTTP API ------------------------------------------------------

class JanusError extends Error {
  constructor(code, reason) { super(`janus error ${code}: ${reason}`); this.code = code; }
}

let txCounter = 0;
const newTransaction = () => `t${process.pid}-${++txCounter}`;

// One Janus session shared by every call; events reach calls by handle id.
class JanusSession {
  constructor(base) {
    this.base = base;
    this.id = 0;
    this.handles = new Map(); // handle id -> event callback
    this.waiters = new Map(); // transaction -> resolve, for asynchronous requests
    this.stopped = false;
  }

  async post(path, body) {
    const transaction = newTransaction();
    const res = await fetch(this.base + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, transaction }),
    });
    if (!res.ok) throw new Error(`janus HTTP ${res.status} for ${body.janus}`);
    const reply = await res.json();
    if (reply.janus === 'error') throw new JanusError(reply.error?.code, reply.error?.reason);
    return { reply, transaction };
  }

  async start() {
    const info = await (await fetch(`${this.base}/info`)).json();
    this.version = info.version_string || String(info.version ?? '?');
    const { reply } = await this.post('', { janus: 'create' });
    this.id = reply.data.id;
    this.keepalive = setInterval(() => {
      this.post(`/${this.id}`, { janus: 'keepalive' }).catch((e) => log('keepalive failed:', e.message));
    }, 25000);
    this.pollLoop();
  }

  async pollLoop() {
    while (!this.stopped) {
      let events;
      try {
        const res = await fetch(`${this.base}/${this.id}?maxev=64&rid=${Date.now()}`);
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        events = await res.json();
      } catch (e) {
        if (this.stopped) return;
        log('long poll failed:', e.message);
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      for (const ev of Array.isArray(events) ? events : [events]) this.dispatch(ev);
    }
  }

  dispatch(ev) {
    if (ev.janus === 'keepalive') return;
    if (ev.janus === 'error' && ev.error?.code === 458) { // no such session: nothing else will work
      log('Janus lost our session; exiting');
      process.exit(1);
    }
    const waiter = ev.transaction && this.waiters.get(ev.transaction);
    if (waiter && ev.janus === 'event') {
      this.waiters.delete(ev.transaction);
      waiter(ev);
      return;
    }
    const onEvent = this.handles.get(ev.sender);
    if (onEvent) onEvent(ev);
    else debug('event for no call:', JSON.stringify(ev).slice(0, 200));
  }

  async attach(onEvent) {
    const { reply } = await this.post(`/${this.id}`, { janus: 'attach', plugin: 'janus.plugin.audiobridge' });
    const handle = reply.data.id;
    this.handles.set(handle, onEvent);
    return handle;
  }

  async detach(handle) {
    this.handles.delete(handle);
    await this.post(`/${this.id}/${handle}`, { janus: 'detach' });
  }

  // A synchronous plugin request: the plugin's answer is in the HTTP reply.
  async request(handle, body) {
    const { reply } = await this.post(`/${this.id}/${handle}`, { janus: 'message', body });
    const data = reply.plugindata?.data;
    if (!data) throw new Error(`no plugin data in reply to ${body.request}`);
    if (data.error) throw new JanusError(data.error_code, data.error);
    return data;
  }

  // An asynchronous one: Janus acks, and the result comes as an event with the
  // same transaction through the long poll.
  async requestAsync(handle, body, jsep, timeoutMs = 15000) {
    const transaction = newTransaction();
    const event = new Promise((resolveEvent, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(transaction);
        reject(new Error(`no reply to ${body.request} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.set(transaction, (ev) => { clearTimeout(timer); resolveEvent(ev); });
    });
    const res = await fetch(`${this.base}/${this.id}/${handle}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ janus: 'message', body, jsep, transaction }),
    });
    const reply = await res.json();
    if (reply.janus === 'error') {
      this.waiters.delete(transaction);
      throw new JanusError(reply.error?.code, reply.error?.reason);
    }
    const ev = await event;
    const data = ev.plugindata?.data;
    if (data?.error) throw new JanusError(data.error_code, data.error);
    return ev;
  }

  async trickle(handle, candidate) {
    await this.post(`/${this.id}/${handle}`, { janus: 'trickle', candidate: candidate ?? { completed: true } });
  }

  async stop() {
    this.stopped = true;
    clearInterval(this.keepalive);
    if (this.id) await this.post(`/${this.id}`, { janus: 'destroy' }).catch(() => {});
  }
}

// --- calls ---------------------------------------------------------------

const calls = new Set();

// The answer with `maxplaybackrate=RATE` on its Opus fmtp line, unless the
// line has one already or RATE is the full band. An Opus rtpmap without an
// fmtp line gets one.
function withPlaybackRate(sdp, rate) {
  if (rate >= 48000 || /maxplaybackrate=/i.test(sdp)) return sdp;
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const lines = sdp.split(eol);
  const pts = lines.map((l) => /^a=rtpmap:(\d+) opus\//i.exec(l)?.[1]).filter(Boolean);
  for (const pt of pts) {
    const i = lines.findIndex((l) => l.startsWith(`a=fmtp:${pt} `));
    if (i >= 0) lines[i] += `;maxplaybackrate=${rate}`;
    else lines.splice(lines.findIndex((l) => l.startsWith(`a=rtpmap:${pt} `)) + 1, 0, `a=fmtp:${pt} maxplaybackrate=${rate}`);
  }
  return lines.join(eol);
}

// Maps Janus's hangup reasons onto the protocol's `end` reasons.
function endReason(janusReason = '') {
  const r = janusReason.toLowerCase();
  if (r.includes('ice')) return 'ice timeout';
  if (r.includes('dtls')) return 'dtls failed';
  return 'hangup';
}

class Call {
  constructor(conn) {
    this.conn = conn;
    this.handle = 0;
    this.room = 0;
    this.id = '';
    this.ended = false;
    this.answered = false;
    this.pendingCandidates = [];
    calls.add(this);
  }

  // Sets the call up in Janus and returns the answer SDP.
  async start(sdp) {
    this.handle = await janus.attach((ev) => this.onEvent(ev));
    this.id = `janus-${this.handle}`;
    const created = await janus.request(this.handle, {
      request: 'create', permanent: false, is_private: true, sampling_rate: opts.rate,
      audiolevel_ext: false, audiolevel_event: false, record: false,
    });
    this.room = created.room;
    const hasCandidates = /^a=candidate:/m.test(sdp);
    const ev = await janus.requestAsync(this.handle, { request: 'join', room: this.room, display: 'caller' },
      { type: 'offer', sdp, trickle: !hasCandidates });
    if (!ev.jsep?.sdp) throw new Error('Janus joined without an answer');
    this.answered = true;
    for (const c of this.pendingCandidates.splice(0)) this.sendCandidate(c);
    if (opts.play) {
      await janus.request(this.handle, { request: 'play_file', room: this.room, filename: opts.play, loop: true });
    }
    return withPlaybackRate(ev.jsep.sdp, opts.rate);
  }

  // An offer on a call in progress (the page restarting ICE).
  async renegotiate(sdp) {
    const ev = await janus.requestAsync(this.handle, { request: 'configure' },
      { type: 'offer', sdp, trickle: !/^a=candidate:/m.test(sdp) });
    if (!ev.jsep?.sdp) throw new Error('Janus gave no answer to the new offer');
    return withPlaybackRate(ev.jsep.sdp, opts.rate);
  }

  candidate(c) {
    if (this.answered) this.sendCandidate(c);
    else this.pendingCandidates.push(c);
  }

  sendCandidate(c) {
    const cand = c && typeof c.candidate === 'string' && c.candidate
      ? { candidate: c.candidate, sdpMid: c.sdpMid ?? '0', sdpMLineIndex: c.sdpMLineIndex ?? 0 } : null;
    janus.trickle(this.handle, cand).catch((e) => debug(this.id, 'trickle:', e.message));
  }

  onEvent(ev) {
    debug(this.id, 'event', ev.janus, ev.reason || ev.plugindata?.data?.audiobridge || '');
    if (ev.janus === 'webrtcup') this.conn.sendJson({ type: 'connected', call_id: this.id });
    else if (ev.janus === 'hangup') this.end(endReason(ev.reason));
  }

  // Ends the call: tells the client (unless it asked), frees the room and handle.
  async end(reason, { notify = true } = {}) {
    if (this.ended) return;
    this.ended = true;
    calls.delete(this);
    if (this.conn.call === this) this.conn.call = null;
    if (notify && this.id) this.conn.sendJson({ type: 'end', reason, call_id: this.id });
    await this.starting?.catch(() => {}); // let a setup in flight finish, then undo it
    if (!this.handle) return;
    try {
      if (this.room) await janus.request(this.handle, { request: 'destroy', room: this.room });
    } catch (e) {
      debug(this.id, 'destroy room:', e.message);
    }
    await janus.detach(this.handle).catch((e) => debug(this.id, 'detach:', e.message));
  }
}

// --- signaling (docs/protocol.md) ---------------------------------------

const MAX_MESSAGE = 256 * 1024;

function onConnection(conn) {
  conn.call = null;
  conn.sendJson({ type: 'hello', server: 'janus-audiobridge (via janus_adapter)', version: janus.version });
  conn.onText = (text) => handleMessage(conn, text).catch((e) => {
    log('internal error:', e.stack || e.message);
    conn.sendJson({ type: 'error', code: 'internal', message: e.message });
  });
  conn.onClose = () => { if (conn.call) conn.call.end('hangup', { notify: false }); };
}

function sendError(conn, code, message) {
  conn.sendJson({ type: 'error', code, message });
}

async function handleMessage(conn, text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    return sendError(conn, 'bad_json', e.message);
  }
  if (!msg || typeof msg !== 'object' || Array.isArray(msg) || typeof msg.type !== 'string')
    return sendError(conn, 'bad_message', 'a message is an object with a string "type"');
  switch (msg.type) {
    case 'offer': return handleOffer(conn, msg);
    case 'ice-candidate':
      if (conn.call) conn.call.candidate(msg.candidate);
      return;
    case 'hangup':
      if (conn.call) await conn.call.end('hangup');
      return;
    case 'resume':
      return sendError(conn, 'unknown_call', 'calls cannot be resumed through Janus');
    case 'ping':
      return conn.sendJson({ type: 'pong', id: msg.id ?? null });
    default:
      return sendError(conn, 'unknown_type', `unknown message type "${msg.type}"`);
  }
}

async function handleOffer(conn, msg) {
  if (typeof msg.sdp !== 'string' || !msg.sdp) return sendError(conn, 'bad_message', '"sdp" must be a string');
  if (msg.config !== undefined && (typeof msg.config !== 'object' || msg.config === null || Array.isArray(msg.config)))
    return sendError(conn, 'bad_message', '"config" must be an object');
  if (msg.call_id !== undefined) {
    const call = conn.call;
    if (!call || call.id !== msg.call_id) return sendError(conn, 'unknown_call', `no call ${msg.call_id} here`);
    try {
      const sdp = await call.renegotiate(msg.sdp);
      return conn.sendJson({ type: 'answer', sdp, call_id: call.id });
    } catch (e) {
      return sendError(conn, 'bad_sdp', e.message);
    }
  }
  if (conn.call) return sendError(conn, 'in_call', 'this connection already has a call');
  if (opts.maxCalls && calls.size >= opts.maxCalls) return sendError(conn, 'busy', 'at max_calls');
  const call = new Call(conn);
  conn.call = call;
  try {
    call.starting = call.start(msg.sdp);
    const sdp = await call.starting;
    if (call.ended) return; // hung up while Janus was setting up
    conn.sendJson({ type: 'answer', sdp, call_id: call.id });
  } catch (e) {
    debug('call setup failed:', e.message);
    await call.end('hangup', { notify: false });
    sendError(conn, e instanceof JanusError ? 'bad_sdp' : 'internal', e.message);
  }
}

// --- WebSocket server (RFC 6455) ----------------------------------------

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const utf8 = new TextDecoder('utf-8', { fatal: true });

class WsConnection {
  constructor(socket, head) {
    this.socket = socket;
    this.buf = head?.length ? Buffer.from(head) : Buffer.alloc(0);
    this.fragments = null; // text message being assembled from continuation frames
    this.fragmentBytes = 0;
    this.closing = false;
    this.onText = () => {};
    this.onClose = () => {};
    socket.setNoDelay(true);
    socket.on('data', (d) => { this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d; this.parse(); });
    socket.on('close', () => { this.closing = true; this.onClose(); });
    socket.on('error', (e) => debug('socket:', e.message));
  }

  parse() {
    while (!this.closing && this.buf.length >= 2) {
      const b0 = this.buf[0], b1 = this.buf[1];
      const fin = (b0 & 0x80) !== 0, opcode = b0 & 0x0f;
      if (b0 & 0x70) return this.fail(1002, 'reserved bits set');
      if (!(b1 & 0x80)) return this.fail(1002, 'client frames must be masked');
      let len = b1 & 0x7f, off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        const big = this.buf.readBigUInt64BE(2);
        if (big > BigInt(MAX_MESSAGE)) return this.fail(1009, 'message too big');
        len = Number(big);
        off = 10;
      }
      if (opcode >= 8 && (len > 125 || !fin)) return this.fail(1002, 'bad control frame');
      if (len > MAX_MESSAGE) return this.fail(1009, 'message too big');
      if (this.buf.length < off + 4 + len) return;
      const mask = this.buf.subarray(off, off + 4);
      const payload = Buffer.from(this.buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < len; i++) payload[i] ^= mask[i & 3];
      this.buf = this.buf.subarray(off + 4 + len);
      this.frame(fin, opcode, payload);
    }
  }

  frame(fin, opcode, payload) {
    switch (opcode) {
      case 0x0: // continuation
        if (!this.fragments) return this.fail(1002, 'continuation without a message');
        return this.addFragment(fin, payload);
      case 0x1: // text
        if (this.fragments) return this.fail(1002, 'new message inside a fragmented one');
        this.fragments = [];
        this.fragmentBytes = 0;
        return this.addFragment(fin, payload);
      case 0x2:
        return this.fail(1003, 'binary frames are not accepted');
      case 0x8: { // close: answer with the same code, then end the connection
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1000;
        return this.close(code === 1005 || code === 1006 || code === 1015 ? 1002 : code);
      }
      case 0x9:
        return this.writeFrame(0xA, payload);
      case 0xA:
        return undefined;
      default:
        return this.fail(1002, `unknown opcode ${opcode}`);
    }
  }

  addFragment(fin, payload) {
    this.fragmentBytes += payload.length;
    if (this.fragmentBytes > MAX_MESSAGE) return this.fail(1009, 'message too big');
    this.fragments.push(payload);
    if (!fin) return undefined;
    const whole = this.fragments.length === 1 ? this.fragments[0] : Buffer.concat(this.fragments);
    this.fragments = null;
    let text;
    try {
      text = utf8.decode(whole);
    } catch {
      return this.fail(1007, 'text is not UTF-8');
    }
    return this.onText(text);
  }

  writeFrame(opcode, payload) {
    if (this.socket.destroyed || !this.socket.writable) return;
    const len = payload.length;
    let header;
    if (len < 126) {
      header = Buffer.from([0x80 | opcode, len]);
    } else if (len < 65536) {
      header = Buffer.alloc(4);
      header[0] = 0x80 | opcode; header[1] = 126; header.writeUInt16BE(len, 2);
    } else {
      header = Buffer.alloc(10);
      header[0] = 0x80 | opcode; header[1] = 127; header.writeBigUInt64BE(BigInt(len), 2);
    }
    this.socket.write(Buffer.concat([header, payload]));
  }

  sendJson(obj) {
    if (!this.closing) this.writeFrame(0x1, Buffer.from(JSON.stringify(obj)));
  }

  fail(code, why) {
    debug('closing WebSocket:', code, why);
    this.close(code);
  }

  close(code) {
    if (this.closing) return;
    this.closing = true;
    const body = Buffer.alloc(2);
    body.writeUInt16BE(code, 0);
    this.writeFrame(0x8, body);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.onClose();
    this.onClose = () => {};
  }
}

function upgrade(req, socket, head) {
  const key = req.headers['sec-websocket-key'];
  const ok = req.method === 'GET' && new URL(req.url, 'http://x').pathname === '/ws'
    && /\bwebsocket\b/i.test(req.headers.upgrade || '')
    && /\bupgrade\b/i.test(req.headers.connection || '')
    && req.headers['sec-websocket-version'] === '13'
    && typeof key === 'string' && Buffer.from(key, 'base64').length === 16;
  if (!ok) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
    + `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  const conn = new WsConnection(socket, head);
  onConnection(conn);
  conn.parse(); // frames that came with the upgrade request
}

// --- static page ---------------------------------------------------------

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.ico': 'image/x-icon' };

async function serveStatic(req, res) {
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ status: 'ok', calls: calls.size }));
  }
  const file = resolve(join(opts.web || '/nonexistent', path === '/' ? 'index.html' : decodeURIComponent(path)));
  if (!opts.web || req.method !== 'GET' || !file.startsWith(opts.web + sep) || !TYPES[extname(file)]) {
    res.writeHead(404);
    return res.end();
  }
  try {
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file)], 'cache-control': 'no-store' });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end();
  }
}

// --- main ----------------------------------------------------------------

const janus = new JanusSession(opts.janus);
try {
  await janus.start();
} catch (e) {
  die(`cannot reach Janus at ${opts.janus}: ${e.message}`);
}

const server = createServer((req, res) => serveStatic(req, res).catch(() => res.destroy()));
server.on('upgrade', upgrade);
server.listen(opts.port, opts.host, () => {
  const { address, port } = server.address();
  process.stdout.write(`listening on http://${address}:${port}/\n`);
});

let stopping = false;
async function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close();
  await Promise.allSettled([...calls].map((c) => c.end('server shutting down')));
  await janus.stop();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
