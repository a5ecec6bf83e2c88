// Prints the side-by-side result of bench/janus.sh from its output folder.
//
// usage: node bench/janus_summary.mjs OUT_DIR
//
// Reads OUT_DIR/{janus,tingshuo}.json (what `tingshuo bench --find-max --json`
// wrote) and OUT_DIR/{janus,tingshuo}.proc ("peak_rss_kb cpu_seconds", sampled
// from /proc by janus.sh), and prints one line per server and the ratio of
// the largest sustained call counts. The count is looked up under the names
// the --find-max report may use (max_calls, or find_max.max_calls, ...), so a
// rename in the client's JSON shows up here as "not found" rather than as a
// wrong number.
//
// It also states the conditions the numbers hold under: the rate of Janus's
// rooms and whether the servers were pinned to one core (OUT_DIR/setup.json,
// written by janus.sh), and, when tingshuo's report carries it, the codec
// floor that `tingshuo bench` measured: one call's Opus decode + encode for
// a second of speech on this machine, in % of a core, beside each server's
// measured CPU per call.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: node bench/janus_summary.mjs OUT_DIR\n');
  process.exit(2);
}

const KEYS = ['max_calls', 'maxCalls', 'max_sustained_calls', 'sustained_calls'];

// Depth-first search for the first numeric field named in KEYS; a numeric
// `find_max` counts too.
function findMax(obj, depth = 0) {
  if (!obj || typeof obj !== 'object' || depth > 4) return undefined;
  for (const k of KEYS) if (typeof obj[k] === 'number') return obj[k];
  if (typeof obj.find_max === 'number') return obj.find_max;
  for (const v of Object.values(obj)) {
    const found = findMax(v, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

function load(name) {
  const jsonPath = join(dir, `${name}.json`);
  const r = { name, ran: existsSync(jsonPath) || existsSync(join(dir, `${name}.proc`)) };
  if (existsSync(jsonPath)) {
    try {
      r.report = JSON.parse(readFileSync(jsonPath, 'utf8'));
      r.max = findMax(r.report);
    } catch (e) {
      r.error = `${jsonPath}: ${e.message}`;
    }
  } else {
    r.error = `${jsonPath} was not written`;
  }
  const procPath = join(dir, `${name}.proc`);
  if (existsSync(procPath)) {
    const [rssKb, cpu] = readFileSync(procPath, 'utf8').trim().split(/\s+/).map(Number);
    r.rssMb = rssKb / 1024;
    r.cpuS = cpu;
  }
  return r;
}

let setup = {};
try {
  setup = JSON.parse(readFileSync(join(dir, 'setup.json'), 'utf8'));
} catch {
  // an older run's folder: no setup recorded
}
const rate = setup.rate ? `${setup.rate / 1000} kHz` : 'unknown rate (no setup.json)';
console.log(`setup     Janus rooms at ${rate}; ` + (setup.pin
  ? `each server pinned to core ${setup.server_cpu}, the client and adapter to core ${setup.client_cpu}: ` +
    'the counts below are calls per server core'
  : 'not pinned: servers and client share every core'));

const rows = ['janus', 'tingshuo'].map(load).filter((r) => r.ran);
const floor = rows.map((r) => r.report?.codec_floor).find((f) => f && typeof f.percent_of_core === 'number');
if (floor) {
  console.log(`floor     one call's Opus decode (${floor.decode_rate / 1000} kHz) + encode (48 kHz, 20 ms frames) ` +
    `of speech: ${floor.percent_of_core.toFixed(3)}% of a core`);
}
for (const r of rows) {
  const max = r.max === undefined ? 'not found' : String(r.max);
  const res = r.rssMb === undefined ? '' : `, peak RSS ${r.rssMb.toFixed(1)} MB, CPU ${r.cpuS.toFixed(1)} s over the run`;
  console.log(`${r.name.padEnd(9)} --find-max: ${max} concurrent calls${res}`);
  // Per call at the largest count: CPU over that round's steady part; memory
  // against the idle server before the first round (a heap keeps what later
  // rounds' idle readings would otherwise hide).
  const rounds = r.report?.find_max?.rounds ?? [];
  const at = rounds.find((x) => x.calls === r.max && x.pass);
  const idleKb = rounds[0]?.server?.rss_idle_kb;
  if (at?.server && idleKb !== undefined) {
    const kb = (at.server.rss_peak_kb - idleKb) / at.calls;
    console.log(`          at ${r.max} calls: server ${at.server.cpu_percent.toFixed(0)}% CPU, ` +
      `${at.server.cpu_percent_per_call.toFixed(2)}% of a core and ${kb.toFixed(0)} KB per call, ` +
      `p99 jitter ${at.outbound_jitter_ms.p99} ms`);
    // The floor is the codec work of one of tingshuo's calls (decode at 16 kHz,
    // encode at 48 kHz); a Janus room codes at its own rate and decodes the
    // played file too, so the floor is not Janus's and is not set against it.
    if (r.name === 'tingshuo' && floor && at.server.cpu_percent_per_call > 0) {
      const share = floor.percent_of_core / at.server.cpu_percent_per_call;
      console.log(`          the codec floor is ${(100 * share).toFixed(0)}% of that per-call CPU ` +
        `(per-call CPU = ${(1 / share).toFixed(2)}x the floor)`);
    }
  }
  if (r.error) console.log(`          (${r.error})`);
  else if (r.max === undefined) console.log(`          (no max_calls in the report; its keys: ${Object.keys(r.report).join(', ')})`);
}
const [j, t] = [rows.find((r) => r.name === 'janus'), rows.find((r) => r.name === 'tingshuo')];
if (j && t && j.max > 0 && t.max !== undefined) {
  const unit = setup.pin ? 'calls per server core' : 'calls';
  const capped = setup.max_calls && (t.max >= setup.max_calls || j.max >= setup.max_calls);
  console.log(`ratio     tingshuo / janus = ${(t.max / j.max).toFixed(2)} (${unit}, rooms at ${rate})` +
    (capped ? `: not a capacity, --max-calls ${setup.max_calls} stopped the ramp` : ''));
} else if (j && t) {
  console.log('ratio     not available (a --find-max result is missing)');
}
