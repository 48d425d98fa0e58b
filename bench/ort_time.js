// bench/ort_time.js — times ONNX Runtime (npm onnxruntime-node) on an ONNX
// file dlc exported, for bench/run.sh.
//
//   NODE_PATH=out/onnx_check/node_modules node bench/ort_time.js \
//       MODEL.onnx DIMS BATCH REPS
//
// DIMS is the shape of one example of the model's one input, comma-separated
// (784, or 1,28,28); the input is f32[BATCH, DIMS...].  One intra-op and
// one inter-op thread, sequential execution, all graph optimisations.  After
// a warm-up, each repetition runs the session for at least 0.1 s of process
// CPU time (process.cpuUsage: user + system of every thread, so work ONNX
// Runtime would do on another thread is counted) and prints the mean time
// per call, Node's cost of a call included (about 10 µs: bench/run.sh
// measures it on a one-op model and prints it beside the batch-1 figure).
// One line:  us_per_call 412.5 409.8 ...
'use strict';
const ort = require('onnxruntime-node');

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function main() {
  const [path, dims, batchArg, repsArg] = process.argv.slice(2);
  const batch = Number(batchArg), reps = Number(repsArg);
  if (!path || !dims || !(batch >= 1) || !(reps >= 1)) {
    console.error('usage: node bench/ort_time.js MODEL.onnx DIMS BATCH REPS');
    process.exit(2);
  }
  const shape = [batch, ...dims.split(',').map(Number)];
  const session = await ort.InferenceSession.create(path, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const size = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) data[i] = ((i * 7919) % 255) / 255;
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, shape) };
  let t0 = cpuSeconds();
  while (cpuSeconds() - t0 < 0.05) await session.run(feeds); // warm-up
  const out = [];
  for (let r = 0; r < reps; r++) {
    t0 = cpuSeconds();
    let calls = 0, t;
    do {
      await session.run(feeds);
      calls++;
    } while ((t = cpuSeconds() - t0) < 0.1);
    out.push((1e6 * t / calls).toFixed(3));
  }
  console.log('us_per_call ' + out.join(' '));
}

main().catch((e) => {
  console.error(`ort_time: ${e.message || e}`);
  process.exit(1);
});
