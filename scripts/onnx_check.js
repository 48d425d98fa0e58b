// scripts/onnx_check.js MANIFEST... — runs exported ONNX models in ONNX
// Runtime (onnxruntime-node, found through NODE_PATH) on the inputs each
// manifest line names and compares every output with dlc's result.
//
// A manifest line is NAME <TAB> MODEL.onnx <TAB> in=PATH,... <TAB> out=PATH,...
// (inputs and dlc's outputs as .npy), or NAME <TAB> - <TAB> REASON for a
// case dlc does not export, or NAME <TAB> = <TAB> out=GOT,... <TAB>
// out=WANT,... for outputs dlc computed twice (the round trip through
// dlc import) compared with each other.  An output agrees when NaN and infinities sit
// where dlc's are and every other element is within 1e-5 of dlc's,
// relative to the largest magnitude of dlc's output (norm-wise, floor
// 1e-6: the measure the test suite uses between dlc's backends, since
// float sums in another order cancel differently).  Prints one row per
// case and ends with "N passed, N failed".
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

const TOL = 1e-5;

function readNpy(path) {
  const b = fs.readFileSync(path);
  if (b.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(path + ': not a .npy file');
  const major = b[6];
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12);
  const header = b.toString('latin1', start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map(s => s.trim()).filter(s => s).map(Number);
  const data = b.subarray(start + hlen);
  const copy = new Uint8Array(data).buffer;
  const types = {'<f4': ['float32', Float32Array], '<f8': ['float64', Float64Array],
                 '<i4': ['int32', Int32Array], '<i8': ['int64', BigInt64Array]};
  if (!types[descr]) throw new Error(path + ': dtype ' + descr);
  const [type, Arr] = types[descr];
  return new ort.Tensor(type, new Arr(copy), shape);
}

// The largest norm-wise error of got against want, or Infinity when the
// shapes differ or a NaN or infinity is not matched.
function normErr(got, want) {
  if (got.dims.join() !== want.dims.join()) return Infinity;
  let m = 1e-6, e = 0;
  const g = got.data, w = want.data;
  for (let i = 0; i < w.length; i++) if (Number.isFinite(Number(w[i]))) m = Math.max(m, Math.abs(Number(w[i])));
  for (let i = 0; i < w.length; i++) {
    const a = Number(g[i]), b = Number(w[i]);
    if (a === b || (Number.isNaN(a) && Number.isNaN(b))) continue;
    if (!Number.isFinite(a) || !Number.isFinite(b)) return Infinity;
    e = Math.max(e, Math.abs(a - b) / m);
  }
  return e;
}

function pairs(field) {
  return field.split(',').filter(s => s).map(s => { const k = s.indexOf('='); return [s.slice(0, k), s.slice(k + 1)]; });
}

// Outputs of two dlc runs: the worst error of each GOT against its WANT.
function compareCase(fields) {
  const want = new Map(pairs(fields[3]));
  let worst = 0;
  for (const [name, path] of pairs(fields[2])) {
    if (!fs.existsSync(path)) throw new Error('no output ' + name + ' (see import.log beside it)');
    worst = Math.max(worst, normErr(readNpy(path), readNpy(want.get(name))));
  }
  return worst;
}

async function runCase(fields) {
  if (fields[1] === '=') return compareCase(fields);
  const [, model, ins, outs] = fields;
  const session = await ort.InferenceSession.create(model, {logSeverityLevel: 3});
  const feeds = {};
  for (const [name, path] of pairs(ins)) feeds[name] = readNpy(path);
  const results = await session.run(feeds);
  let worst = 0;
  for (const [name, path] of pairs(outs)) {
    if (!results[name]) throw new Error('no output ' + name);
    worst = Math.max(worst, normErr(results[name], readNpy(path)));
  }
  return worst;
}

async function main() {
  let passed = 0, failed = 0, skipped = 0;
  const pad = (s, n) => (s + ' '.repeat(n)).slice(0, Math.max(n, s.length));
  console.log(pad('case', 34) + pad('result', 14) + 'max error (norm-wise)');
  for (const file of process.argv.slice(2)) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const fields = line.split('\t');
      if (fields[1] === '-') {
        skipped++;
        console.log(pad(fields[0], 34) + pad('not exported', 14) + fields[2]);
        continue;
      }
      let err, msg = '';
      try { err = await runCase(fields); } catch (e) { err = Infinity; msg = '  ' + String(e.message || e).split('\n')[0]; }
      const ok = err <= TOL;
      ok ? passed++ : failed++;
      console.log(pad(fields[0], 34) + pad(ok ? 'ok' : 'FAIL', 14) + (Number.isFinite(err) ? err.toExponential(2) : 'inf') + msg);
    }
  }
  console.log(`${skipped} not exported (no ONNX form)`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

main();
