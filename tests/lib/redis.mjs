// A private Redis for tests: Debian's redis-server on a free loopback port, in
// a temporary directory, nothing written to disk (--save '' --appendonly no),
// no system service. stop() and start() again keep the port, so a test can
// take Redis away from a cluster and give it back at the same address.
import { spawn, execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tempDir } from './harness.mjs';

const SERVER = process.env.REDIS_SERVER || 'redis-server';
const CLI = process.env.REDIS_CLI || 'redis-cli';

function has(cmd) {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// Why Redis cannot be used here, or null when it can.
export function redisMissing() {
  if (!has(SERVER)) return `${SERVER} not found (apt-get install redis-server)`;
  if (!has(CLI)) return `${CLI} not found (apt-get install redis-tools)`;
  return null;
}

// A TCP port nothing listens on right now (a race with other programs is possible, not likely).
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export async function startRedis({ startTimeoutMs = 10000 } = {}) {
  const dir = tempDir('tingshuo-redis-');
  const port = await freePort();
  let child = null, exited = null, log = '';

  async function start() {
    if (child) return;
    child = spawn(SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => { log += d; });
    child.stderr.on('data', (d) => { log += d; });
    const me = child;
    exited = new Promise((resolve) => me.on('exit', (code, signal) => {
      if (child === me) child = null;
      resolve({ code, signal });
    }));
    const t0 = Date.now();
    for (;;) {
      if (!child) throw new Error(`redis-server exited:\n${log}`);
      if (ping()) return;
      if (Date.now() - t0 > startTimeoutMs) throw new Error(`redis-server did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  function ping() {
    try {
      return cli('PING') === 'PONG';
    } catch {
      return false;
    }
  }

  // One command through redis-cli; its reply as text (lines for a list).
  function cli(...args) {
    return execFileSync(CLI, ['-h', '127.0.0.1', '-p', String(port), '--raw', ...args],
      { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  }

  // Stops the server (SIGKILL with hard: a crash, not a shutdown); the port stays ours to reuse.
  async function stop({ hard = false } = {}) {
    if (!child) return;
    child.kill(hard ? 'SIGKILL' : 'SIGTERM');
    const kill = setTimeout(() => child && child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(kill);
  }

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    cli,
    start,
    stop,
    get running() { return child !== null; },
    // Every key matching `pattern`, sorted.
    keys(pattern = '*') {
      const out = cli('--scan', '--pattern', pattern);
      return out ? out.split('\n').sort() : [];
    },
    async remove() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
