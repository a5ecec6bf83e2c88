// tingshuo web client: connects to the server's signaling WebSocket.
'use strict';

const statusEl = document.getElementById('status');

function setStatus(text, state) {
  statusEl.textContent = text;
  statusEl.dataset.state = state;
}

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

function connect() {
  const ws = new WebSocket(wsUrl());
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === 'hello') setStatus(`Connected to ${msg.server} ${msg.version}`, 'ready');
  };
  ws.onclose = () => {
    setStatus('The server is unreachable; retrying…', 'error');
    setTimeout(connect, 2000);
  };
}

connect();
