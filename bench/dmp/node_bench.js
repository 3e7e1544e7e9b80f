// The JavaScript side of bench/dmp: the npm diff-match-patch 1.0.5 on the
// inputs of inputs.lua; prints one JSON object of timings (ms) and outputs.
'use strict';
const fs = require('fs');
const G = require('diff-match-patch');
const inp = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const reps = +(process.env.REPS || 5);
const d = new G();
d.Match_Threshold = 0.375; d.Match_Distance = 100; d.Patch_DeleteThreshold = 0.375;  // the server's

function time(f) {
  const ms = [];
  let r;
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    r = f();
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((x, y) => x - y);
  return {min: ms[0], median: ms[Math.floor(ms.length / 2)], result: r};
}

const out = {};
for (const size of ['big', 'small']) {
  const {a, b, c} = inp[size];
  const make = time(() => d.patch_toText(d.patch_make(a, b)));
  const text = make.result;
  const exact = time(() => d.patch_apply(d.patch_fromText(text), a));
  const other = time(() => d.patch_apply(d.patch_fromText(text), c));
  out[size] = {
    make: {min: make.min, median: make.median, md5: require('crypto').createHash('md5').update(text).digest('hex')},
    exact: {min: exact.min, median: exact.median, ok: exact.result[0] === b},
    other: {min: other.min, median: other.median,
            md5: require('crypto').createHash('md5').update(other.result[0]).digest('hex'),
            applied: other.result[1].filter((x) => x).length, hunks: other.result[1].length},
  };
}
console.log(JSON.stringify(out));
