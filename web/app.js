// tingshuo web client.
//
// One WebSocket to /ws carries signaling (docs/protocol.md). Pressing Call
// takes the microphone, makes an RTCPeerConnection, sends its offer and
// applies the server's answer; the server is ICE-lite, so the browser's
// connectivity checks find it at the host candidates in the answer.
//
// It survives two kinds of network trouble. When ICE breaks (the network
// changed), the page restarts ICE: a new offer on the same call. When the
// WebSocket drops, the page reconnects and resumes the call by its id; the
// server keeps the call for 30 s meanwhile.
'use strict';

const $ = (id) => document.getElementById(id);
const ui = { call: $('call'), hangup: $('hangup'), status: $('status'), info: $('callinfo'),
  level: $('level'), timer: $('timer'), remote: $('remote') };

const state = {
  ws: null, wsReady: false, pc: null, stream: null, callId: null, inCall: false,
  restarting: false, startedAt: 0, timerId: 0, meterCtx: null, pendingSends: [],
};
window.tingshuo = state; // for tests and curious people

function setStatus(text, kind) {
  ui.status.textContent = text;
  ui.status.dataset.state = kind;
}

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
}

function send(msg) {
  if (state.ws && state.wsReady) state.ws.send(JSON.stringify(msg));
  else state.pendingSends.push(msg);
}

// --- WebSocket -----------------------------------------------------------

function connect() {
  const ws = new WebSocket(wsUrl());
  state.ws = ws;
  ws.onopen = () => {
    state.wsReady = true;
    if (state.callId && state.inCall) send({ type: 'resume', call_id: state.callId });
    const queued = state.pendingSends.splice(0);
    for (const m of queued) ws.send(JSON.stringify(m));
  };
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
  ws.onclose = () => {
    state.wsReady = false;
    if (state.ws !== ws) return;
    if (state.inCall) setStatus('Connection to the server lost; reconnecting…', 'calling');
    else setStatus('The server is unreachable; retrying…', 'error');
    ui.call.disabled = true;
    setTimeout(connect, state.inCall ? 500 : 2000);
  };
}

const handlers = {
  hello(msg) {
    if (!state.inCall) {
      setStatus(`Ready. Connected to ${msg.server} ${msg.version}.`, 'ready');
      ui.call.disabled = false;
    }
  },
  async answer(msg) {
    if (!state.pc) return;
    state.callId = msg.call_id;
    await state.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    state.restarting = false;
    ui.info.textContent = `Call ${msg.call_id}`;
  },
  resumed(msg) {
    setStatus('In call', 'incall');
  },
  end(msg) {
    endCall(msg.reason === 'hangup' ? 'Call ended.' : `Call ended: ${msg.reason}.`);
  },
  error(msg) {
    console.warn('server error', msg.code, msg.message);
    if (msg.code === 'unknown_call' && state.inCall) endCall('The call could not be resumed.');
    else if (!state.inCall || !state.callId) endCall(`The server refused the call: ${msg.message}`, true);
  },
};

function onMessage(msg) {
  const h = handlers[msg.type];
  if (h) Promise.resolve(h(msg)).catch((e) => console.warn(e));
}

// --- the call ------------------------------------------------------------

async function startCall() {
  ui.call.disabled = true;
  setStatus('Asking for the microphone…', 'calling');
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: false,
    });
  } catch (e) {
    const denied = e && (e.name === 'NotAllowedError' || e.name === 'SecurityError');
    endCall(denied ? 'Microphone access was denied. Allow it in the browser and try again.'
                   : `No microphone available (${e.name || e}).`, true);
    return;
  }
  state.inCall = true;
  ui.hangup.hidden = false;
  ui.call.hidden = true;
  setStatus('Calling…', 'calling');
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

async function sendOffer(iceRestart) {
  const pc = state.pc;
  const offer = await pc.createOffer({ iceRestart });
  await pc.setLocalDescription(offer);
  const msg = { type: 'offer', sdp: pc.localDescription.sdp };
  if (state.callId) msg.call_id = state.callId;
  send(msg);
}

function onConnectionState(pc) {
  if (pc !== state.pc) return;
  if (pc.connectionState === 'connected') {
    setStatus('In call', 'incall');
    if (!state.startedAt) startTimer();
  } else if (pc.connectionState === 'failed') {
    restartIce();
  }
}

function onIceState(pc) {
  if (pc !== state.pc) return;
  if (pc.iceConnectionState === 'disconnected' || pc.iceConnectionState === 'failed') restartIce();
}

// The network changed: new ICE credentials on the same call.
function restartIce() {
  if (!state.pc || state.restarting || !state.callId) return;
  state.restarting = true;
  setStatus('Network changed; reconnecting the call…', 'calling');
  sendOffer(true).catch((e) => console.warn(e));
}

function hangup() {
  send({ type: 'hangup' });
  endCall('Call ended.');
}

function endCall(text, isError) {
  if (state.pc) state.pc.close();
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  if (state.meterCtx) state.meterCtx.close();
  clearInterval(state.timerId);
  Object.assign(state, { pc: null, stream: null, callId: null, inCall: false, restarting: false,
    startedAt: 0, meterCtx: null });
  ui.remote.srcObject = null;
  ui.level.style.width = '0';
  ui.hangup.hidden = true;
  ui.call.hidden = false;
  ui.call.disabled = !state.wsReady;
  ui.info.textContent = '';
  setStatus(text, isError ? 'error' : 'ready');
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

function startMeter(stream) {
  const ctx = new AudioContext();
  const an = ctx.createAnalyser();
  an.fftSize = 512;
  ctx.createMediaStreamSource(stream).connect(an);
  const buf = new Float32Array(an.fftSize);
  state.meterCtx = ctx;
  const draw = () => {
    if (state.meterCtx !== ctx) return;
    an.getFloatTimeDomainData(buf);
    let s = 0;
    for (const v of buf) s += v * v;
    const db = 20 * Math.log10(Math.sqrt(s / buf.length) + 1e-9);
    ui.level.style.width = `${Math.max(0, Math.min(100, (db + 60) * 100 / 60))}%`;
    requestAnimationFrame(draw);
  };
  draw();
}

ui.call.onclick = () => startCall().catch((e) => endCall(`The call failed: ${e.message || e}`, true));
ui.hangup.onclick = hangup;
window.addEventListener('pagehide', () => { if (state.inCall) send({ type: 'hangup' }); });
connect();
