// The server skeleton end to end: start on free ports, /healthz, static
// files, the WebSocket protocol's basics, HTTPS with a generated certificate,
// configuration errors, and a clean, leak-free, prompt shutdown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import https from 'node:https';
import net from 'node:net';
import dgram from 'node:dgram';
import { startServer, run, tempDir, wsConnect, SOURCE_DIR } from '../lib/harness.mjs';

test('healthz, static files and 404', async () => {
  const srv = await startServer();
  try {
    const h = await fetch(srv.url + 'healthz');
    assert.equal(h.status, 200);
    assert.match(h.headers.get('content-type'), /application\/json/);
    const body = await h.json();
    assert.equal(body.status, 'ok');
    assert.match(body.version, /^\d+\.\d+\.\d+$/);

    const index = await fetch(srv.url);
    assert.equal(index.status, 200);
    assert.equal(await index.text(), readFileSync(join(SOURCE_DIR, 'web', 'index.html'), 'utf8'));
    const js = await fetch(srv.url + 'app.js');
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type'), /javascript/);

    assert.equal((await fetch(srv.url + 'no-such-file.txt')).status, 404);
    assert.equal((await fetch(srv.url + 'api/nothing-here')).status, 404);
  } finally {
    await srv.stop();
  }
});

test('websocket round trip and bad messages', async () => {
  const srv = await startServer();
  try {
    const c = await wsConnect(srv.wsUrl());
    const hello = await c.next();
    assert.equal(hello.type, 'hello');
    assert.equal(hello.server, 'tingshuo');

    c.send({ type: 'ping', id: 42 });
    assert.deepEqual(await c.next(), { type: 'pong', id: 42 });

    c.send('{not json');
    let m = await c.next();
    assert.equal(m.type, 'error');
    assert.equal(m.code, 'bad_json');

    c.send({ no: 'type' });
    m = await c.next();
    assert.equal(m.code, 'bad_message');

    c.send({ type: 'teleport' });
    m = await c.next();
    assert.equal(m.code, 'unknown_type');

    // After all that the connection still works, and so does everybody else's.
    const other = await wsConnect(srv.wsUrl());
    await other.next();
    c.send({ type: 'ping', id: 1 });
    assert.equal((await c.next()).type, 'pong');
    other.send({ type: 'ping', id: 2 });
    assert.equal((await other.next()).id, 2);
    const health = await (await fetch(srv.url + 'healthz')).json();
    assert.equal(health.connections, 2);
    c.close();
    other.close();
  } finally {
    await srv.stop();
  }
});

test('websocket upgrades are refused outside /ws', async () => {
  const srv = await startServer();
  try {
    await assert.rejects(wsConnect(srv.wsUrl('/elsewhere')));
  } finally {
    await srv.stop();
  }
});

test('an oversized websocket message closes only that connection', async () => {
  const srv = await startServer();
  try {
    const c = await wsConnect(srv.wsUrl());
    await c.next();
    const closed = new Promise((resolve) => c.ws.on('close', (code) => resolve(code)));
    c.send('x'.repeat(300 * 1024));
    assert.equal(await closed, 1009);
    const d = await wsConnect(srv.wsUrl());
    assert.equal((await d.next()).type, 'hello');
    d.close();
  } finally {
    await srv.stop();
  }
});

test('https with a self-signed certificate generated on first start', async () => {
  const srv = await startServer({ args: ['--https-listen', '127.0.0.1:0'] });
  try {
    assert.ok(srv.httpsUrl, 'the server announces its https URL');
    assert.ok(existsSync(join(srv.dataDir, 'tls', 'cert.pem')));
    const body = await new Promise((resolve, reject) => {
      https.get(srv.httpsUrl + 'healthz', { rejectUnauthorized: false }, (res) => {
        let b = '';
        const cert = res.socket.getPeerCertificate();
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve({ status: res.statusCode, body: b, cert }));
      }).on('error', reject);
    });
    assert.equal(body.status, 200);
    assert.equal(JSON.parse(body.body).status, 'ok');
    assert.match(body.cert.subjectaltname, /DNS:localhost/);
  } finally {
    await srv.stop();
  }
});

test('shutdown on SIGTERM (no call to drain) and on SIGINT is clean and within one second', async () => {
  for (const signal of ['SIGTERM', 'SIGINT']) {
    const srv = await startServer();
    const c = await wsConnect(srv.wsUrl());
    await c.next();
    await srv.idle(); // a shutdown, not the start-up's warm-up, is what is timed
    const { ms } = await srv.stop({ signal });
    // ThreadSanitizer runs the code several times slower; the bound that matters is the real build's.
    const bound = process.env.TS_SANITIZE === 'thread' ? 3000 : 1000;
    assert.ok(ms < bound, `${signal}: shutdown took ${ms} ms`);
  }
});

test('configuration errors name the key, the value and where they came from', async () => {
  const dir = tempDir();
  const conf = join(dir, 'bad.conf');
  writeFileSync(conf, '# comment\nlisten = 127.0.0.1:0\nmedia_port = 70000\n');
  let r = await run(['serve', '--config', conf]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /bad\.conf:3/);
  assert.match(r.stderr, /media_port/);
  assert.match(r.stderr, /70000/);

  writeFileSync(conf, 'lisen = 127.0.0.1:0\n');
  r = await run(['serve', '--config', conf]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /bad\.conf:1: unknown key "lisen"/);

  r = await run(['serve', '--log-level', 'loud']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /flag --log-level/);
  assert.match(r.stderr, /"loud"/);

  r = await run(['serve'], { env: { TINGSHUO_AGENT: 'parrot' } });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /TINGSHUO_AGENT/);
  assert.match(r.stderr, /parrot/);

  r = await run(['serve'], { env: { TINGSHUO_NO_SUCH_KEY: '1' } });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /TINGSHUO_NO_SUCH_KEY/);

  r = await run(['serve', '--config', join(dir, 'missing.conf')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /missing\.conf/);

  const busy = net.createServer();
  await new Promise((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = busy.address().port;
  r = await run(['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dir]);
  busy.close();
  assert.notEqual(r.code, 0);
  assert.ok(r.stderr.includes(`cannot listen on 127.0.0.1:${port}`), r.stderr);
});

test('a busy media port stops the start with a clear error and no leak', async () => {
  const busy = dgram.createSocket('udp4');
  await new Promise((resolve) => busy.bind(0, '127.0.0.1', resolve));
  const port = busy.address().port;
  const dir = tempDir();
  const r = await run(['serve', '--listen', '127.0.0.1:0', '--data-dir', dir, '--media-workers', '1',
    '--media-port', String(port)]);
  busy.close();
  assert.equal(r.code, 1, r.stderr); // 1: a start failure, not a sanitizer report
  assert.ok(r.stderr.includes(`cannot bind UDP 0.0.0.0 port ${port}`), r.stderr); // the default media_address
});

test('settings precedence: file < environment < flag', async () => {
  const dir = tempDir();
  const conf = join(dir, 'ok.conf');
  writeFileSync(conf, 'log_format = json\nlog_level = error\n');
  // The file says error, the environment says info: info lines appear, as JSON.
  const srv = await startServer({ args: ['--config', conf], env: { TINGSHUO_LOG_LEVEL: 'info' } });
  await srv.stop();
  const lines = srv.stderr.trim().split('\n');
  assert.ok(lines.length > 0);
  for (const line of lines) {
    const ev = JSON.parse(line);
    assert.ok(ev.ts && ev.level && ev.module && typeof ev.msg === 'string');
  }
  assert.ok(lines.some((l) => JSON.parse(l).level === 'info'));
  // A flag beats both.
  const quiet = await startServer({ args: ['--config', conf, '--log-level', 'error'], env: { TINGSHUO_LOG_LEVEL: 'info' } });
  await quiet.stop();
  assert.equal(quiet.stderr.trim(), '');
});

test('help and version', async () => {
  let r = await run(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /tingshuo serve/);
  r = await run(['serve', '--help']);
  assert.equal(r.code, 0);
  for (const flag of ['--listen', '--https-listen', '--data-dir', '--media-port', '--agent', '--config'])
    assert.ok(r.stdout.includes(flag), `serve --help mentions ${flag}`);
  r = await run(['--version']);
  assert.match(r.stdout, /^tingshuo \d+\.\d+\.\d+\n$/);
  r = await run(['dance']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "dance"/);
});

test('the example configuration is exactly what the server prints', async () => {
  const r = await run(['serve', '--print-config-example']);
  assert.equal(r.code, 0);
  assert.equal(readFileSync(join(SOURCE_DIR, 'tingshuo.conf.example'), 'utf8'), r.stdout,
    'regenerate with: build/tingshuo serve --print-config-example > tingshuo.conf.example');
  // ...and a server accepts it as it is.
  const dir = tempDir();
  writeFileSync(join(dir, 'ex.conf'), r.stdout.replace('listen = 127.0.0.1:8080', 'listen = 127.0.0.1:0'));
  const srv = await startServer({ args: ['--config', join(dir, 'ex.conf')] });
  await srv.stop();
});
