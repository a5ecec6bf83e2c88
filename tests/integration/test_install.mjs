// `cmake --install` as an operator (or a package build) runs it: the files land where
// docs/deploy.md says, the installed binary finds its web files at its prefix with no
// --web-root and without the source tree, and the systemd unit parses.
//
// The deployment files are checked against the server too: every TINGSHUO_* variable they set
// is a setting the server knows (it refuses unknown ones), the published UDP ranges are the
// media ports the settings give, and the Kubernetes ConfigMap's file starts a server. They are
// read as text (no YAML parser among the test tools): the checks look for simple lines.
//
// The install is staged under a DESTDIR, so the installed binary's web_root (the prefix's
// share/tingshuo/web) only holds the files once the staged tree is seen at the prefix: the
// server is started in a private mount namespace with the staged share/ bound over the
// prefix's. Where namespaces are not allowed (not root), that part is skipped with a message
// and only the compiled-in path is checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { BIN, SOURCE_DIR, tempDir } from '../lib/harness.mjs';

const BUILD_DIR = dirname(BIN);

function cacheValue(key) {
  const cache = readFileSync(join(BUILD_DIR, 'CMakeCache.txt'), 'utf8');
  const m = new RegExp(`^${key}:[A-Z]+=(.*)$`, 'm').exec(cache);
  return m ? m[1] : null;
}

function install() {
  const destdir = tempDir('tingshuo-install-');
  const r = spawnSync('cmake', ['--install', BUILD_DIR], {
    env: { ...process.env, DESTDIR: destdir }, encoding: 'utf8',
  });
  assert.equal(r.status, 0, `cmake --install failed:\n${r.stdout}\n${r.stderr}`);
  return destdir;
}

const prefix = cacheValue('CMAKE_INSTALL_PREFIX');
const staged = (destdir, ...p) => join(destdir, prefix, ...p);

// Starts the installed binary with argv (no --web-root), the staged tree seen at the prefix.
async function startInstalled(destdir, dataDir) {
  const bin = staged(destdir, 'bin', 'tingshuo');
  // Bind the narrowest directory that already exists at the prefix.
  const target = existsSync(join(prefix, 'share', 'tingshuo')) ? join(prefix, 'share', 'tingshuo')
    : join(prefix, 'share');
  const source = join(destdir, target);
  const script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"';
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TINGSHUO_')) env[k] = v;
  const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh',
    source, target, bin, 'serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir,
    '--agent', 'echo', '--records', 'off', '--media-workers', '1'], { env });
  let stdout = '', stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`installed server did not start:\n${stderr}`)), 15000);
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /open (http:\/\/\S+) in a browser/.exec(stdout);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`installed server exited with ${code}:\n${stderr}`)); });
  });
  return {
    url,
    async stop() {
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 10000);
      const { code, signal } = await exited;
      clearTimeout(kill);
      assert.equal(code, 0, `installed server exit status ${code} (${signal}); stderr:\n${stderr}`);
    },
  };
}

function canUseMountNamespace() {
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'true']);
  return r.status === 0;
}

test('cmake --install puts every file where docs/deploy.md says', () => {
  assert.ok(prefix, 'CMAKE_INSTALL_PREFIX is in the build\'s cache');
  const destdir = install();
  try {
    const bin = staged(destdir, 'bin', 'tingshuo');
    assert.ok(statSync(bin).mode & 0o111, 'the binary is executable');
    for (const f of ['index.html', 'app.js', 'style.css', 'history.html', 'history.js'])
      assert.equal(readFileSync(staged(destdir, 'share', 'tingshuo', 'web', f), 'utf8'),
        readFileSync(join(SOURCE_DIR, 'web', f), 'utf8'), `web/${f} installed as it is`);
    assert.equal(readFileSync(staged(destdir, 'share', 'doc', 'tingshuo', 'tingshuo.conf.example'), 'utf8'),
      readFileSync(join(SOURCE_DIR, 'tingshuo.conf.example'), 'utf8'));
    const unit = readFileSync(join(destdir, prefix, 'lib', 'systemd', 'system', 'tingshuo.service'), 'utf8');
    assert.match(unit, new RegExp(`^ExecStart=${prefix}/bin/tingshuo serve --config /etc/tingshuo/tingshuo.conf$`, 'm'),
      'the installed unit names the binary where it was installed');
    // The installed binary carries the installed web_root, never the source tree's.
    const image = readFileSync(bin);
    assert.ok(image.includes(Buffer.from(`${prefix}/share/tingshuo/web\0`)),
      `the installed binary's default web_root is ${prefix}/share/tingshuo/web`);
    assert.ok(!image.includes(Buffer.from(`${join(SOURCE_DIR, 'web')}\0`)),
      'the installed binary does not name the source tree\'s web/');
    const v = spawnSync(bin, ['--version'], { encoding: 'utf8' });
    assert.equal(v.status, 0);
    assert.match(v.stdout, /\d+\.\d+\.\d+/);
  } finally {
    rmSync(destdir, { recursive: true, force: true });
  }
});

test('the installed binary serves its installed web files and /healthz with no --web-root', async (t) => {
  if (!canUseMountNamespace()) {
    t.skip('no private mount namespace here (needs root or user namespaces): only the compiled-in path was checked');
    return;
  }
  const destdir = install();
  const dataDir = tempDir();
  try {
    // A marker only the installed copy has: proves the page came from the prefix.
    const marker = `<!-- installed copy ${process.pid} -->\n`;
    const index = staged(destdir, 'share', 'tingshuo', 'web', 'index.html');
    writeFileSync(index, readFileSync(index, 'utf8') + marker);
    const srv = await startInstalled(destdir, dataDir);
    try {
      const page = await fetch(srv.url);
      assert.equal(page.status, 200);
      assert.ok((await page.text()).endsWith(marker), '/ is the installed index.html');
      const h = await fetch(srv.url + 'healthz');
      assert.equal(h.status, 200);
      assert.equal((await h.json()).status, 'ok');
    } finally {
      await srv.stop();
    }
  } finally {
    rmSync(destdir, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('the systemd unit parses', (t) => {
  if (spawnSync('systemd-analyze', ['--version']).status !== 0) {
    t.skip('systemd-analyze is not installed: the unit was not verified');
    return;
  }
  // verify checks that ExecStart's binary exists: point it at this build's.
  const dir = tempDir('tingshuo-unit-');
  try {
    const unit = readFileSync(join(SOURCE_DIR, 'deploy', 'tingshuo.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/local\/bin\/tingshuo /m);
    writeFileSync(join(dir, 'tingshuo.service'), unit.replace('/usr/local/bin/tingshuo', BIN));
    const r = spawnSync('systemd-analyze', ['verify', join(dir, 'tingshuo.service')], { encoding: 'utf8' });
    assert.equal(r.status, 0, `systemd-analyze verify:\n${r.stdout}${r.stderr}`);
    assert.equal(r.stderr.trim(), '', `systemd-analyze verify warned:\n${r.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const deployFile = (...p) => readFileSync(join(SOURCE_DIR, 'deploy', ...p), 'utf8');
const uncommented = (text) => text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');

test('every TINGSHUO_* variable in deploy/ is a setting the server knows', async () => {
  const help = spawnSync(BIN, ['serve', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  const known = new Set([...help.stdout.matchAll(/^\s+--([a-z0-9-]+)/gm)]
    .map((m) => 'TINGSHUO_' + m[1].replace(/-/g, '_').toUpperCase()));
  assert.ok(known.has('TINGSHUO_MEDIA_PORT') && known.has('TINGSHUO_CALL_SECRET'), 'serve --help lists the settings');
  const files = ['compose.yaml', 'tingshuo.service', 'Dockerfile', 'k8s/deployment.yaml',
    'k8s/secret.example.yaml'];
  let seen = 0;
  for (const f of files) {
    for (const m of uncommented(deployFile(f)).matchAll(/\b(TINGSHUO_[A-Z0-9_]+)\b/g)) {
      seen++;
      assert.ok(known.has(m[1]), `${f} sets ${m[1]}, which tingshuo serve does not know`);
    }
  }
  assert.ok(seen > 5, 'the files were read');
});

test('compose.yaml publishes each node\'s media ports, and the Deployment the ConfigMap\'s', () => {
  const compose = uncommented(deployFile('compose.yaml'));
  const workers = Number(/TINGSHUO_MEDIA_WORKERS: "(\d+)"/.exec(compose)[1]);
  const nodes = compose.split(/^  (?=node\d+:$)/m).slice(1);
  assert.equal(nodes.length, 2, 'two tingshuo nodes');
  const ports = new Set();
  for (const node of nodes) {
    const base = Number(/TINGSHUO_MEDIA_PORT: "(\d+)"/.exec(node)[1]);
    const range = `${base}-${base + workers - 1}`;
    assert.ok(node.includes(`"${range}:${range}/udp"`), `node publishes ${range}/udp as itself:\n${node}`);
    assert.ok(!ports.has(base), 'each node has its own ports');
    ports.add(base);
  }
  const conf = /tingshuo\.conf: \|\n((?: {4}.*\n|\n)+)/.exec(deployFile('k8s', 'configmap.yaml'))[1];
  const mediaPort = Number(/^\s*media_port = (\d+)$/m.exec(conf)[1]);
  const mediaWorkers = Number(/^\s*media_workers = (\d+)$/m.exec(conf)[1]);
  const udp = [...deployFile('k8s', 'deployment.yaml').matchAll(/containerPort: (\d+)\n\s+protocol: UDP/g)]
    .map((m) => Number(m[1]));
  assert.deepEqual(udp, Array.from({ length: mediaWorkers }, (_, i) => mediaPort + i));
});

test('the Kubernetes ConfigMap\'s settings start a server', async () => {
  const conf = /tingshuo\.conf: \|\n((?: {4}.*\n|\n)+)/.exec(deployFile('k8s', 'configmap.yaml'))[1]
    .replace(/^ {4}/gm, '');
  const dir = tempDir('tingshuo-k8s-');
  writeFileSync(join(dir, 'tingshuo.conf'), conf);
  // Flags win over the file: free ports and a temporary data_dir, the rest as in the ConfigMap.
  const child = spawn(BIN, ['serve', '--config', join(dir, 'tingshuo.conf'), '--listen', '127.0.0.1:0',
    '--metrics-listen', '127.0.0.1:0', '--media-port', '0', '--media-address', '127.0.0.1',
    '--data-dir', dir, '--agent', 'echo'],
  { env: { PATH: process.env.PATH, TINGSHUO_CALL_SECRET: 'k'.repeat(32), TINGSHUO_ANNOUNCE_ADDRESS: '127.0.0.1' } });
  let out = '', err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`did not start:\n${err}`)), 15000);
      child.stdout.on('data', (d) => {
        out += d;
        const m = /open (http:\/\/\S+) in a browser/.exec(out);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
      exited.then((code) => { clearTimeout(timer); reject(new Error(`exited with ${code}:\n${err}`)); });
    });
    assert.match(err, /call_auth token/, 'the ConfigMap asks for call tokens');
    const h = await fetch(url + 'healthz');
    assert.equal(h.status, 200);
  } finally {
    child.kill('SIGTERM');
    assert.equal(await exited, 0, err);
    rmSync(dir, { recursive: true, force: true });
  }
});
