// Reads two ms_print reports of the same server with A and B calls
// (bench/memory.sh) and prints what one more call costs, by the tingshuo
// source line that asked for it.
//
// usage: node bench/memory_summary.mjs REPORT_A A REPORT_B B SRC_DIR
//
// In each report, the peak snapshot's allocation tree is walked; every
// node whose frame is a line of one of our .c files (any under SRC_DIR),
// with none of ours above it on the way from the allocator, gets the node's
// bytes. The per-call figure of a line is its bytes in B less its bytes in
// A, over B - A, so what every call shares cancels out.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

function ourFiles(dir, found = new Set()) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) ourFiles(join(dir, e.name), found);
    else if (e.name.endsWith('.c')) found.add(e.name);
  }
  return found;
}

const FRAME = /: (\S+) \((\w+\.c):(\d+)\)/;

// Bytes per "function file:line" at the report's peak, and the peak's heap.
function byLine(report, ours) {
  const lines = readFileSync(report, 'utf8').split('\n');
  const peak = /Detailed snapshots: \[[^\]]*?(\d+) \(peak\)/.exec(lines.join('\n'));
  if (!peak) throw new Error(`${report}: no peak snapshot`);
  const start = lines.findIndex((l) => new RegExp(`^\\s*${peak[1]}\\s+[\\d,]+\\s`).test(l));
  const total = Number(lines[start].trim().split(/\s+/)[2].replace(/,/g, ''));
  const got = new Map();
  const stack = []; // per depth: whether that frame is ours
  for (const l of lines.slice(start + 2)) {
    if (/^-{10}/.test(l) || /^\s*\d+\s+[\d,]+\s+[\d,]+/.test(l)) break;
    const m = /^([| ]*)->\s*[\d.]+% \(([\d,]+)B\) (.*)$/.exec(l);
    if (!m) continue;
    const depth = m[1].length / 2;
    const bytes = Number(m[2].replace(/,/g, ''));
    const f = FRAME.exec(m[3]);
    const mine = Boolean(f && ours.has(f[2]));
    stack.length = depth;
    if (mine && !stack.some(Boolean)) {
      const key = `${f[1]} ${f[2]}:${f[3]}`;
      got.set(key, (got.get(key) || 0) + bytes);
    }
    stack.push(mine);
  }
  return { got, total };
}

const [reportA, a, reportB, b, src] = process.argv.slice(2);
if (!src) {
  console.error('usage: node bench/memory_summary.mjs REPORT_A A REPORT_B B SRC_DIR');
  process.exit(2);
}
const ours = ourFiles(src);
const na = Number(a), nb = Number(b);
const A = byLine(reportA, ours), B = byLine(reportB, ours);
const rows = [...new Set([...A.got.keys(), ...B.got.keys()])]
  .map((k) => [k, ((B.got.get(k) || 0) - (A.got.get(k) || 0)) / (nb - na)])
  .filter(([, v]) => Math.abs(v) >= 256)
  .sort((x, y) => y[1] - x[1]);
console.log(`heap per call at the peak, (${nb} calls - ${na} calls) / ${nb - na}:`);
for (const [k, v] of rows) console.log(`${(v / 1024).toFixed(1).padStart(8)} KB  ${k}`);
console.log(`${((B.total - A.total) / (nb - na) / 1024).toFixed(1).padStart(8)} KB  all of the heap`);
