// tingshuo web client.
//
// One WebSocket to /ws carries signaling and the conversation's events
// (docs/protocol.md). Pressing Call takes the microphone, makes an
// RTCPeerConnection, sends its offer with the caller's settings as `config`
// and applies the server's answer; the server is ICE-lite, so the browser's
// connectivity checks find it at the host candidates in the answer.
//
// During the call the server reports what happens: the turn state, what it
// heard (partial hypotheses, then the final text), the reply as it is
// spoken, and the latency of each turn. The page only renders those; it
// keeps no conversation state of its own beyond what is on screen.
//
// It survives two kinds of network trouble. When ICE breaks (the network
// changed), the page restarts ICE: a new offer on the same call. When the
// WebSocket drops, the page reconnects and resumes the call by its id and
// the resume_secret its answer carried; the server keeps the call for 30 s
// meanwhile. Whatever was in flight on the dropped socket (an offer, an ICE
// restart) is sent again on the new one.
//
// A server with call_auth = token needs a call token with each new call
// (docs/security.md). The page takes it from `window.tingshuoCallToken`,
// which a page embedding this script may set before it loads (a string, or
// a function returning one or a promise of one, asked before each call so
// that each call can get a fresh token), else from ?token= in this page's
// address. Without either it offers without a token.
//
// In a cluster (docs/cluster.md) the server may answer an offer or a resume
// with `redirect`: the call is (to be) on another node. The page opens a
// socket to that node and sends the same offer again, marked redirected, or
// the same resume; the old socket is closed. The node's address is kept for
// reconnecting during the call, and forgotten when the call ends.
'use strict';

// --- text in two languages ---------------------------------------------------

const TEXT = {
  en: {
    tagline: 'Talk with an AI, by voice.', call: 'Call', hangup: 'Hang up', settings: 'Settings',
    historyLink: 'History',
    switchTo: '中文', switchLabel: '切换到中文', callControls: 'Call controls',
    micLevel: 'Microphone level', serverLevel: 'What the server hears', conversation: 'Conversation',
    dismiss: 'Dismiss', empty: 'Press Call and start talking.',
    connecting: 'Connecting…', ready: 'Ready. Connected to {server} {version}.',
    askingMic: 'Asking for the microphone…', calling: 'Calling…', incall: 'In call',
    wsLost: 'Connection to the server lost; reconnecting…',
    unreachable: 'The server is unreachable; retrying…',
    iceRestart: 'Network changed; reconnecting the call…',
    ended: 'Call ended.', endedWhy: 'Call ended: {reason}.',
    refused: 'The server refused the call: {message}', notResumed: 'The call could not be resumed.',
    micDenied: 'Microphone access was denied. Allow it in the browser and try again.',
    noMic: 'No microphone available ({name}).', failed: 'The call failed: {message}',
    callInfo: 'Call {id}',
    st_idle: 'Not in a call', st_connected: 'Connected', st_listening: 'Listening',
    st_user_speaking: 'You are speaking', st_thinking: 'Thinking…', st_speaking: 'Speaking',
    you: 'You', ai: 'AI', interrupted: 'interrupted', tool: 'Tool', toolRunning: 'running…', toolFailed: 'failed',
    latency: 'Latency', latencyCaption: 'Latency of each turn, in milliseconds',
    lastTurn: 'last turn {ms} ms', ms: 'ms',
    l_turn: 'Turn', l_endpoint: 'Endpoint', l_asr: 'ASR', l_llm_token: 'LLM 1st token',
    l_llm_sentence: 'LLM 1st sentence', l_tts: 'TTS 1st audio', l_overhead: 'Overhead',
    l_v2v: 'Voice to voice', l_barge: 'Barge-in',
    settingsNote: 'Used from the next call. Empty fields take the server\'s settings.',
    sLanguage: 'Language', sVoice: 'Voice', sPrompt: 'System prompt', sGreeting: 'Greeting',
    sNoGreeting: 'Start without a greeting', sRate: 'Speaking rate', sReset: 'Reset', sDone: 'Done',
    serverDefault: 'Server default', bytes: '{n} / {max} bytes',
    r_goodbye: 'the AI said goodbye', r_idle: 'nobody spoke for a while',
    'r_ice timeout': 'the network path was lost', 'r_dtls failed': 'the secure connection failed',
    'r_fingerprint mismatch': 'the secure connection failed',
    'r_resume timeout': 'the page was away too long', 'r_server shutting down': 'the server is shutting down',
    'r_dtls timeout': 'the secure connection never completed', 'r_ICE restart failed': 'the network path could not be renewed',
    'r_internal error': 'the server failed', 'r_out of memory': 'the server ran out of memory',
    'r_max duration': 'the call reached its time limit',
    'r_setup timeout': 'the media connection could not be set up',
  },
  zh: {
    tagline: '用声音和 AI 交谈。', call: '通话', hangup: '挂断', settings: '设置',
    historyLink: '通话记录',
    switchTo: 'English', switchLabel: 'Switch to English', callControls: '通话控制',
    micLevel: '麦克风音量', serverLevel: '服务器听到的音量', conversation: '对话',
    dismiss: '关闭', empty: '点击“通话”，然后开始说话。',
    connecting: '正在连接…', ready: '就绪，已连接到 {server} {version}。',
    askingMic: '正在请求麦克风…', calling: '正在呼叫…', incall: '通话中',
    wsLost: '与服务器的连接中断，正在重新连接…',
    unreachable: '无法连接到服务器，正在重试…',
    iceRestart: '网络发生变化，正在恢复通话…',
    ended: '通话已结束。', endedWhy: '通话已结束：{reason}。',
    refused: '服务器拒绝了通话：{message}', notResumed: '无法恢复通话。',
    micDenied: '麦克风权限被拒绝。请在浏览器中允许后重试。',
    noMic: '没有可用的麦克风（{name}）。', failed: '通话失败：{message}',
    callInfo: '通话 {id}',
    st_idle: '未在通话', st_connected: '已接通', st_listening: '正在听',
    st_user_speaking: '你在说话', st_thinking: '正在思考…', st_speaking: '正在说话',
    you: '你', ai: 'AI', interrupted: '已打断', tool: '工具', toolRunning: '运行中…', toolFailed: '失败',
    latency: '延迟', latencyCaption: '每一轮的延迟（毫秒）',
    lastTurn: '上一轮 {ms} 毫秒', ms: '毫秒',
    l_turn: '轮次', l_endpoint: '断句', l_asr: '语音识别', l_llm_token: 'LLM 首字',
    l_llm_sentence: 'LLM 首句', l_tts: 'TTS 首音', l_overhead: '额外开销',
    l_v2v: '语音到语音', l_barge: '打断',
    settingsNote: '下次通话时生效。留空的项使用服务器的设置。',
    sLanguage: '语言', sVoice: '音色', sPrompt: '系统提示词', sGreeting: '开场白',
    sNoGreeting: '不说开场白', sRate: '语速', sReset: '恢复默认', sDone: '完成',
    serverDefault: '服务器默认', bytes: '{n} / {max} 字节',
    r_goodbye: 'AI 结束了对话', r_idle: '长时间没有人说话',
    'r_ice timeout': '网络连接中断', 'r_dtls failed': '安全连接失败',
    'r_fingerprint mismatch': '安全连接失败',
    'r_resume timeout': '页面离开太久', 'r_server shutting down': '服务器正在关闭',
    'r_dtls timeout': '安全连接未能建立', 'r_ICE restart failed': '网络路径无法恢复',
    'r_internal error': '服务器出错', 'r_out of memory': '服务器内存不足',
    'r_max duration': '通话已达时长上限', 'r_setup timeout': '媒体连接未能建立',
  },
};

function pickLang() {
  const saved = store.get('tingshuo.lang');
  if (saved === 'en' || saved === 'zh') return saved;
  return (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

function t(key, params = {}) {
  const s = TEXT[state.lang][key] ?? TEXT.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => String(params[k] ?? ''));
}

// localStorage can be missing or refuse (private windows, quotas).
const store = {
  get(k) { try { return localStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { localStorage.setItem(k, v); } catch { /* settings last this visit only */ } },
  del(k) { try { localStorage.removeItem(k); } catch { /* as above */ } },
};

// --- elements and state --------------------------------------------------------

const $ = (id) => document.getElementById(id);
const ui = {
  call: $('call'), hangup: $('hangup'), status: $('status'), info: $('callinfo'),
  level: $('level'), meter: $('meter'), serverMeter: $('server-meter'), serverLevel: $('server-level'),
  timer: $('timer'), remote: $('remote'), conv: $('conv'), convLabel: $('conv-label'),
  log: $('log'), empty: $('empty'), notice: $('notice'), noticeText: $('notice-text'),
  lang: $('lang'), latency: $('latency'), latencyLast: $('latency-last'), latencyBar: $('latency-bar'),
  latencyLegend: $('latency-legend'), latencyHead: $('latency-head'), latencyBody: $('latency-body'),
  settings: $('settings'), form: $('settings-form'),
};

const state = {
  ws: null, wsReady: false, pc: null, stream: null, callId: null, resumeSecret: null, token: '',
  inCall: false,
  restarting: false, restartTimer: 0, offerWs: null, startedAt: 0, timerId: 0, meterCtx: null,
  pendingSends: [], lang: 'en', status: { key: 'connecting', params: {}, kind: 'connecting' },
  convState: 'idle', partial: null, reply: null, replyBefore: '', tools: new Map(), turns: new Map(),
  noticeTimer: 0, wsTarget: null, redirected: false, redirects: 0,
};
window.tingshuo = state; // for tests and curious people; functions are added below

function setStatus(key, kind, params = {}) {
  state.status = { key, params, kind };
  ui.status.textContent = t(key, params);
  ui.status.dataset.state = kind;
}

// --- WebSocket -------------------------------------------------------------------

function wsUrl() {
  if (state.wsTarget) return state.wsTarget;
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
}

// A socket that is closing drops what it is given without a word, so only
// an open one is used; anything else waits for the next connection.
function send(msg) {
  if (state.ws && state.wsReady && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(msg));
    if (msg.type === 'offer') state.offerWs = state.ws;
  } else {
    // Only the newest offer matches the local description.
    if (msg.type === 'offer') state.pendingSends = state.pendingSends.filter((m) => m.type !== 'offer');
    state.pendingSends.push(msg);
  }
}

function connect() {
  const ws = new WebSocket(wsUrl());
  state.ws = ws;
  ws.onopen = () => {
    state.wsReady = true;
    if (state.inCall) reattach();
    for (const m of state.pendingSends.splice(0)) send(m);
  };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    onMessage(msg);
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.wsReady = false;
    if (state.inCall) setStatus('wsLost', 'calling');
    else setStatus('unreachable', 'error');
    ui.call.disabled = true;
    setTimeout(connect, state.inCall ? 500 : 2000);
  };
}

// A new socket during a call. With a call id the server keeps the call for
// us: resume it. Without one the offer went out on the old socket and its
// answer was lost with it: offer again (the server ends the orphan).
function reattach() {
  if (state.callId) {
    send({ type: 'resume', call_id: state.callId, resume_secret: state.resumeSecret });
  } else if (state.pc && state.offerWs && state.pc.signalingState === 'have-local-offer') {
    send({ type: 'offer', sdp: state.pc.localDescription.sdp, ...withConfig(), ...withToken(),
      ...(state.redirected ? { redirected: true } : {}) });
  }
}

// Moves the call's signaling to the node the server named. A few in a row
// at most: servers that keep sending the page around have a problem.
function followRedirect(msg) {
  if (typeof msg.url !== 'string' || !/^wss?:\/\//.test(msg.url) || state.redirects >= 3) {
    if (state.inCall) endCall('refused', true, { message: 'bad redirect' });
    return;
  }
  state.redirects++;
  if (msg.reason === 'placement') state.redirected = true;
  const old = state.ws;
  state.wsTarget = msg.url;
  state.wsReady = false;
  connect(); // its onopen sends the offer (redirected) or the resume again: reattach()
  if (old) old.close();
}

const handlers = {
  redirect(msg) { if (state.inCall) followRedirect(msg); },
  hello(msg) {
    if (!state.inCall) {
      setStatus('ready', 'ready', { server: msg.server, version: msg.version });
      ui.call.disabled = false;
    }
  },
  async answer(msg) {
    if (!state.pc) return;
    state.callId = msg.call_id;
    state.redirects = 0;
    if (msg.resume_secret) state.resumeSecret = msg.resume_secret;
    if (state.pc.signalingState !== 'have-local-offer') return; // a late duplicate
    await state.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    state.restarting = false;
    clearTimeout(state.restartTimer);
    callStatus();
    ui.info.textContent = t('callInfo', { id: msg.call_id });
  },
  resumed() {
    if (!state.pc) return;
    state.redirects = 0;
    // An ICE restart whose offer went out on the dropped socket got no answer.
    if (state.restarting && state.offerWs !== state.ws) {
      state.restarting = false;
      restartIce();
    } else {
      callStatus();
    }
  },
  end(msg) {
    if (!state.inCall) return;
    if (msg.reason === 'hangup') endCall('ended');
    else endCall('endedWhy', false, { reason: TEXT[state.lang][`r_${msg.reason}`] || msg.reason });
  },
  error(msg) {
    console.warn('server error', msg.code, msg.message);
    // A candidate or hangup that crossed the call's end on the wire: nothing to do.
    if (msg.code === 'no_call') return;
    const resumeRefused = msg.code === 'unknown_call' || (msg.code === 'unauthorized' && state.callId);
    if (resumeRefused && state.inCall) endCall('notResumed', true);
    else if (state.inCall && !state.callId) endCall('refused', true, { message: msg.message });
    else if (!state.inCall && msg.code !== 'engine') setStatus('refused', 'error', { message: msg.message });
    else showNotice(msg.message || msg.code);
  },
  state(msg) { setConvState(msg.state); },
  transcript(msg) { onTranscript(msg.text || '', !!msg.final); },
  reply_partial(msg) { onReplyPartial(msg.text || ''); },
  reply(msg) { onReply(msg.text || '', !!msg.interrupted); },
  tool_call(msg) { onToolCall(msg); },
  tool_result(msg) { onToolResult(msg); },
  latency(msg) { onLatency(msg); },
  level(msg) { onServerLevel(msg.mic_db); },
};

function onMessage(msg) {
  if (!msg || typeof msg !== 'object') return;
  // Events of a call that is not ours any more (it ended, we hung up).
  if (msg.call_id && state.callId && msg.call_id !== state.callId && msg.type !== 'answer') return;
  const h = handlers[msg.type];
  if (h) Promise.resolve(h(msg)).catch((e) => console.warn(e));
}

// --- the call ----------------------------------------------------------------------

async function startCall() {
  ui.call.disabled = true;
  setStatus('askingMic', 'calling');
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: false,
    });
  } catch (e) {
    const denied = e && (e.name === 'NotAllowedError' || e.name === 'SecurityError');
    if (denied) endCall('micDenied', true);
    else endCall('noMic', true, { name: (e && e.name) || String(e) });
    return;
  }
  try {
    state.token = await callToken();
  } catch (e) {
    endCall('refused', true, { message: `no call token (${(e && e.message) || e})` });
    return;
  }
  state.inCall = true;
  ui.hangup.hidden = false;
  ui.call.hidden = true;
  clearConversation();
  setStatus('calling', 'calling');
  startMeter(state.stream);
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
  state.pc = pc;
  for (const track of state.stream.getAudioTracks()) pc.addTrack(track, state.stream);
  pc.ontrack = (ev) => { ui.remote.srcObject = ev.streams[0] || new MediaStream([ev.track]); };
  pc.onicecandidate = (ev) => { if (ev.candidate) send({ type: 'ice-candidate', candidate: ev.candidate.toJSON() }); };
  pc.onconnectionstatechange = () => onConnectionState(pc);
  pc.oniceconnectionstatechange = () => onIceState(pc);
  await sendOffer(false);
}

// The caller's settings, as the offer's `config` (only what they set).
function withConfig() {
  const s = loadSettings(), c = {};
  if (s.language) c.language = s.language;
  if (s.voice.trim()) c.voice = s.voice.trim();
  if (s.system_prompt.trim()) c.system_prompt = s.system_prompt;
  if (s.no_greeting) c.greeting = '';
  else if (s.greeting.trim()) c.greeting = s.greeting.trim();
  if (Number.isInteger(s.rate)) c.rate = s.rate;
  return Object.keys(c).length ? { config: c } : {};
}

// The call token for a new call: the embedding page's, else ?token= of this page.
async function callToken() {
  const given = window.tingshuoCallToken;
  const t = typeof given === 'function' ? await given() : given;
  if (typeof t === 'string' && t) return t;
  return new URLSearchParams(location.search).get('token') || '';
}

function withToken() {
  return state.token ? { token: state.token } : {};
}

async function sendOffer(iceRestart) {
  const pc = state.pc;
  const offer = await pc.createOffer({ iceRestart });
  if (pc !== state.pc) return;
  await pc.setLocalDescription(offer);
  const msg = { type: 'offer', sdp: pc.localDescription.sdp };
  if (state.callId) msg.call_id = state.callId;
  else Object.assign(msg, withConfig(), withToken());
  send(msg);
}

function onConnectionState(pc) {
  if (pc !== state.pc) return;
  if (pc.connectionState === 'connected') {
    callStatus();
    if (state.convState === 'idle') setConvState('connected');
    if (!state.startedAt) startTimer();
  } else if (pc.connectionState === 'failed') {
    restartIce();
  }
}

function onIceState(pc) {
  if (pc !== state.pc) return;
  if (pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed') callStatus();
  if (pc.iceConnectionState === 'disconnected' || pc.iceConnectionState === 'failed') restartIce();
}

// The status line during a call names the worst trouble there is: an ICE
// restart without an answer may stay connected all along, so each fix
// looks at the whole state rather than at the event that fixed it.
function callStatus() {
  if (!state.inCall) return;
  if (!state.wsReady) setStatus('wsLost', 'calling');
  else if (state.restarting) setStatus('iceRestart', 'calling');
  else if (state.pc && state.pc.connectionState === 'connected') setStatus('incall', 'incall');
  else if (state.status.kind !== 'calling') setStatus('calling', 'calling');
}

// The network changed: new ICE credentials on the same call. If no answer
// comes within 10 s (the socket was down, the server is slow) and ICE is
// still broken, it tries again.
function restartIce() {
  if (!state.pc || state.restarting || !state.callId) return;
  state.restarting = true;
  setStatus('iceRestart', 'calling');
  clearTimeout(state.restartTimer);
  state.restartTimer = setTimeout(() => {
    state.restarting = false;
    const ice = state.pc && state.pc.iceConnectionState;
    if (ice === 'failed' || ice === 'disconnected') restartIce();
    else callStatus();
  }, 10000);
  sendOffer(true).catch((e) => console.warn(e));
}

function hangup() {
  send({ type: 'hangup' });
  endCall('ended');
}

function endCall(key, isError, params) {
  if (state.pc) state.pc.close();
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  if (state.meterCtx) state.meterCtx.close();
  clearInterval(state.timerId);
  clearTimeout(state.restartTimer);
  // Anything queued belonged to this call.
  state.pendingSends = state.pendingSends.filter((m) => m.type !== 'offer' && m.type !== 'ice-candidate');
  Object.assign(state, { pc: null, stream: null, callId: null, resumeSecret: null, token: '',
    inCall: false, restarting: false,
    offerWs: null, startedAt: 0, meterCtx: null, wsTarget: null, redirected: false, redirects: 0 });
  ui.remote.srcObject = null;
  setMeter(ui.level, 0);
  ui.meter.setAttribute('aria-valuenow', '0');
  ui.serverMeter.hidden = true;
  ui.hangup.hidden = true;
  ui.call.hidden = false;
  ui.call.disabled = !state.wsReady;
  ui.info.textContent = '';
  ui.timer.textContent = '';
  setConvState('idle');
  finishLiveBubbles();
  setStatus(key, isError ? 'error' : 'ready', params);
}

function startTimer() {
  state.startedAt = Date.now();
  const tick = () => {
    const s = Math.floor((Date.now() - state.startedAt) / 1000);
    ui.timer.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  };
  tick();
  state.timerId = setInterval(tick, 1000);
}

// --- level meters --------------------------------------------------------------------

const setMeter = (el, pct) => { el.style.clipPath = `inset(0 ${100 - pct}% 0 0)`; };
const dbToPercent = (db) => Math.max(0, Math.min(100, (db + 60) * 100 / 60));

function startMeter(stream) {
  const ctx = new AudioContext();
  const an = ctx.createAnalyser();
  an.fftSize = 512;
  ctx.createMediaStreamSource(stream).connect(an);
  const buf = new Float32Array(an.fftSize);
  state.meterCtx = ctx;
  let lastAria = 0;
  const draw = (now) => {
    if (state.meterCtx !== ctx) return;
    an.getFloatTimeDomainData(buf);
    let s = 0;
    for (const v of buf) s += v * v;
    const pct = dbToPercent(20 * Math.log10(Math.sqrt(s / buf.length) + 1e-9));
    setMeter(ui.level, pct);
    if (now - lastAria > 500) { ui.meter.setAttribute('aria-valuenow', String(Math.round(pct))); lastAria = now; }
    requestAnimationFrame(draw);
  };
  draw(0);
}

function onServerLevel(db) {
  if (typeof db !== 'number') return;
  ui.serverMeter.hidden = false;
  setMeter(ui.serverLevel, dbToPercent(db));
}

// --- the conversation ------------------------------------------------------------------

function setConvState(s) {
  if (!TEXT.en[`st_${s}`]) return;
  state.convState = s;
  ui.conv.dataset.state = s;
  ui.convLabel.textContent = t(`st_${s}`);
}

function clearConversation() {
  for (const el of [...ui.log.children]) if (el !== ui.empty) el.remove();
  ui.empty.hidden = false;
  state.partial = null;
  state.reply = null;
  state.replyBefore = '';
  state.tools.clear();
  state.turns.clear();
  renderLatency();
}

// Keeps the newest line in view, unless the reader scrolled up to read.
function appendToLog(el) {
  const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 40;
  ui.log.append(el);
  ui.empty.hidden = true;
  if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
}

function bubble(role, cls = '') {
  const el = document.createElement('div');
  el.className = `msg ${role} ${cls}`.trim();
  const who = document.createElement('span');
  who.className = 'sr';
  who.dataset.i18n = role === 'user' ? 'you' : 'ai';
  who.textContent = `${t(who.dataset.i18n)}: `;
  const text = document.createElement('p');
  text.className = 'text';
  el.append(who, text);
  return el;
}

// A partial hypothesis is redrawn in place (the log announces additions
// only, so a screen reader is not read every guess); the final text takes
// its place as a new element and is announced.
function onTranscript(text, final) {
  if (!final) {
    if (!state.partial) {
      state.partial = bubble('user', 'partial');
      state.partial.setAttribute('aria-hidden', 'true');
      appendToLog(state.partial);
    }
    state.partial.querySelector('.text').textContent = text;
    return;
  }
  const old = state.partial;
  state.partial = null;
  if (!text.trim()) { if (old) old.remove(); return; }
  const el = bubble('user');
  el.querySelector('.text').textContent = text;
  if (old) old.replaceWith(el);
  else appendToLog(el);
}

const isCjk = (ch) => /[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]/.test(ch || '');

function onReplyPartial(text) {
  if (!text) return;
  if (!state.reply) {
    state.reply = bubble('ai', 'live');
    appendToLog(state.reply);
  }
  const p = state.reply.querySelector('.text');
  const prev = p.textContent;
  const sep = prev && !(isCjk(prev.slice(-1)) && isCjk(text[0])) && !/\s$/.test(prev) ? ' ' : '';
  const span = document.createElement('span');
  span.textContent = sep + text;
  p.append(span);
  const atBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 80;
  if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
}

function onReply(text, interrupted) {
  let el = state.reply;
  state.reply = null;
  // A reply that called tools was drawn in parts around their cards: this bubble is the last part.
  const before = state.replyBefore;
  state.replyBefore = '';
  if (before && text.startsWith(before)) text = text.slice(before.length).trimStart();
  if (!el) {
    if (!text && !interrupted) return;
    el = bubble('ai');
    appendToLog(el);
  }
  el.classList.remove('live');
  const p = el.querySelector('.text');
  if (p.textContent !== text) p.textContent = text;
  if (interrupted) {
    el.classList.add('interrupted');
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.dataset.i18n = 'interrupted';
    tag.textContent = t('interrupted');
    el.append(tag);
  }
}

// --- tools: a small card per call the AI made, filled in when its result comes --------

const compact = (v, max = 160) => {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s && s.length > max ? `${s.slice(0, max - 1)}…` : (s ?? '');
};

function onToolCall(msg) {
  if (state.reply) { // what the AI said before the call stays above the card
    state.replyBefore += state.reply.querySelector('.text').textContent;
    state.reply.classList.remove('live');
    state.reply = null;
  }
  const el = document.createElement('div');
  el.className = 'msg tool running';
  el.dataset.toolCallId = String(msg.tool_call_id ?? '');
  const who = document.createElement('span');
  who.className = 'sr';
  who.dataset.i18n = 'tool';
  who.textContent = `${t('tool')}: `;
  const call = document.createElement('code');
  call.className = 'call';
  call.textContent = `${msg.tool}(${compact(msg.arguments ?? {})})`;
  const result = document.createElement('span');
  result.className = 'result';
  result.dataset.i18n = 'toolRunning';
  result.textContent = t('toolRunning');
  el.append(who, call, result);
  state.tools.set(el.dataset.toolCallId, el);
  appendToLog(el);
}

function onToolResult(msg) {
  const el = state.tools.get(String(msg.tool_call_id ?? ''));
  if (!el) return;
  el.classList.remove('running');
  el.classList.toggle('error', !!msg.is_error);
  const result = el.querySelector('.result');
  delete result.dataset.i18n;
  const ms = typeof msg.ms === 'number' ? ` · ${msg.ms} ms` : '';
  result.textContent = `${msg.is_error ? `${t('toolFailed')}: ` : '→ '}${compact(msg.result)}${ms}`;
}

// A call that ended mid-sentence leaves nothing half-drawn.
function finishLiveBubbles() {
  if (state.partial) { state.partial.classList.remove('partial'); state.partial.removeAttribute('aria-hidden'); }
  if (state.reply) state.reply.classList.remove('live');
  state.partial = null;
  state.reply = null;
}

// --- latency ------------------------------------------------------------------------------

// The parts that add up to voice-to-voice come first, in the order they happen.
const STAGES = [
  { key: 'endpoint_ms', label: 'l_endpoint', part: true },
  { key: 'asr_ms', label: 'l_asr', part: true },
  { key: 'llm_first_token_ms', label: 'l_llm_token' },
  { key: 'llm_first_sentence_ms', label: 'l_llm_sentence', part: true },
  { key: 'tts_first_audio_ms', label: 'l_tts', part: true },
  { key: 'overhead_ms', label: 'l_overhead', part: true },
  { key: 'voice_to_voice_ms', label: 'l_v2v', total: true },
  { key: 'barge_in_ms', label: 'l_barge' },
];

function onLatency(msg) {
  const turn = Number(msg.turn);
  if (!Number.isFinite(turn) || turn < 1) return; // a greeting's figures are not a turn's
  const row = state.turns.get(turn) || {};
  for (const s of STAGES) if (typeof msg[s.key] === 'number') row[s.key] = msg[s.key];
  state.turns.set(turn, row);
  state.lastTurn = turn;
  renderLatency();
}

const fmtMs = (v) => (typeof v === 'number' ? String(Math.round(v)) : '–');

function renderLatency() {
  ui.latencyHead.replaceChildren(...[{ label: 'l_turn' }, ...STAGES].map((s) => {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = t(s.label);
    if (s.key) th.dataset.key = s.key;
    return th;
  }));
  const turns = [...state.turns.keys()].sort((a, b) => b - a);
  ui.latencyBody.replaceChildren(...turns.map((turn) => {
    const row = state.turns.get(turn), tr = document.createElement('tr');
    tr.dataset.turn = String(turn);
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = String(turn);
    tr.append(th);
    for (const s of STAGES) {
      const td = document.createElement('td');
      td.dataset.key = s.key;
      td.textContent = fmtMs(row[s.key]);
      if (s.total) td.className = 'total';
      tr.append(td);
    }
    return tr;
  }));
  const last = state.turns.get(turns[0]);
  ui.latency.classList.toggle('has-data', !!last);
  ui.latencyLast.textContent = last && typeof last.voice_to_voice_ms === 'number'
    ? t('lastTurn', { ms: Math.round(last.voice_to_voice_ms) }) : '';
  renderLatencyBar(last);
}

// The latest turn's voice-to-voice time as a bar of its parts.
function renderLatencyBar(row) {
  const parts = STAGES.filter((s) => s.part);
  ui.latencyBar.replaceChildren();
  ui.latencyLegend.replaceChildren(...parts.map((s) => {
    const li = document.createElement('li');
    li.dataset.key = s.key;
    li.textContent = t(s.label);
    return li;
  }));
  if (!row) return;
  // A reply made in the caller's pause had its engines inside the endpoint's silence: the
  // bar is then that silence and what came after it.
  const shown = row.speculated ? parts.filter((s) => s.key === 'endpoint_ms' || s.key === 'overhead_ms') : parts;
  const sum = shown.reduce((a, s) => a + Math.max(0, row[s.key] || 0), 0);
  const total = Math.max(sum, row.voice_to_voice_ms || 0);
  if (!total) return;
  for (const s of shown) {
    const v = Math.max(0, row[s.key] || 0);
    if (!v) continue;
    const seg = document.createElement('span');
    seg.dataset.key = s.key;
    seg.style.flexGrow = String(v);
    seg.title = `${t(s.label)} ${Math.round(v)} ${t('ms')}`;
    if (v / total > 0.09) seg.textContent = String(Math.round(v));
    ui.latencyBar.append(seg);
  }
}

// --- notices -------------------------------------------------------------------------------

function showNotice(text) {
  ui.noticeText.textContent = text;
  ui.notice.hidden = false;
  clearTimeout(state.noticeTimer);
  state.noticeTimer = setTimeout(() => { ui.notice.hidden = true; }, 8000);
}

// --- settings ------------------------------------------------------------------------------

const SETTINGS_KEY = 'tingshuo.settings';
const PROMPT_MAX = 4000;

function loadSettings() {
  let s = {};
  try { s = JSON.parse(store.get(SETTINGS_KEY) || '{}') || {}; } catch { s = {}; }
  const str = (v) => (typeof v === 'string' ? v : '');
  const rate = Number.isInteger(s.rate) && s.rate >= 50 && s.rate <= 300 ? s.rate : null;
  return { language: str(s.language), voice: str(s.voice), system_prompt: str(s.system_prompt),
    greeting: str(s.greeting), no_greeting: s.no_greeting === true, rate };
}

function fillSettingsForm() {
  const s = loadSettings(), f = ui.form.elements;
  f.language.value = s.language;
  f.voice.value = s.voice;
  f.system_prompt.value = s.system_prompt;
  f.greeting.value = s.greeting;
  f.no_greeting.checked = s.no_greeting;
  f.rate.value = String(s.rate ?? 100);
  f.rate.dataset.set = s.rate === null ? '' : '1';
  renderSettingsHints();
}

function saveSettingsForm(ev) {
  const f = ui.form.elements;
  if (ev && ev.target === f.rate) f.rate.dataset.set = '1';
  // A prompt the server would refuse is cut to its limit, on a character boundary.
  let prompt = f.system_prompt.value;
  const enc = new TextEncoder();
  while (enc.encode(prompt).length > PROMPT_MAX) prompt = prompt.slice(0, -1);
  store.set(SETTINGS_KEY, JSON.stringify({
    language: f.language.value, voice: f.voice.value, system_prompt: prompt,
    greeting: f.greeting.value, no_greeting: f.no_greeting.checked,
    rate: f.rate.dataset.set ? Number(f.rate.value) : null,
  }));
  renderSettingsHints();
}

function renderSettingsHints() {
  const f = ui.form.elements;
  f.rate.form.querySelector('#s-rate-out').textContent = f.rate.dataset.set ? `${f.rate.value}%` : t('serverDefault');
  f.greeting.disabled = f.no_greeting.checked;
  const n = new TextEncoder().encode(f.system_prompt.value).length;
  const count = $('s-prompt-count');
  count.textContent = t('bytes', { n, max: PROMPT_MAX });
  count.classList.toggle('over', n > PROMPT_MAX);
}

function resetSettings() {
  store.del(SETTINGS_KEY);
  fillSettingsForm();
}

// --- the interface language -----------------------------------------------------------------

function applyLang(lang) {
  state.lang = lang;
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of document.querySelectorAll('[data-i18n]')) {
    const v = t(el.dataset.i18n);
    el.textContent = el.classList.contains('sr') && el.parentElement.classList.contains('msg') ? `${v}: ` : v;
  }
  for (const el of document.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
  for (const el of document.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  for (const el of document.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
  ui.lang.textContent = t('switchTo');
  ui.lang.lang = lang === 'zh' ? 'en' : 'zh';
  ui.lang.setAttribute('aria-label', t('switchLabel'));
  setStatus(state.status.key, state.status.kind, state.status.params);
  setConvState(state.convState);
  if (state.callId) ui.info.textContent = t('callInfo', { id: state.callId });
  renderLatency();
  renderSettingsHints();
}

function switchLang() {
  const next = state.lang === 'zh' ? 'en' : 'zh';
  store.set('tingshuo.lang', next);
  applyLang(next);
}

// --- wiring ---------------------------------------------------------------------------------

Object.assign(state, {
  handle: onMessage, // feeds a server message to the page, as if it came over the socket
  restartIce,
  switchLang,
  settings: loadSettings,
});

ui.call.onclick = () => startCall().catch((e) => endCall('failed', true, { message: e.message || e }));
ui.hangup.onclick = hangup;
ui.lang.onclick = switchLang;
$('open-settings').onclick = () => { fillSettingsForm(); ui.settings.showModal(); };
$('s-reset').onclick = resetSettings;
$('notice-close').onclick = () => { ui.notice.hidden = true; };
ui.form.addEventListener('input', saveSettingsForm);
ui.form.addEventListener('change', saveSettingsForm);
window.addEventListener('pagehide', () => { if (state.inCall) send({ type: 'hangup' }); });

fillSettingsForm();
applyLang(pickLang());
connect();
