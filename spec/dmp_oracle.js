// The reference side of spec/dmp_spec.lua: reads a JSON array of cases,
// runs each through the npm diff-match-patch 1.0.5 (Google's) and dmp 1.0.0
// (Floobits' fork, the colab server's), and writes a JSON array of results.
// Usage: node dmp_oracle.js cases.json results.json (NODE_PATH: deps/node_modules)
'use strict';
const fs = require('fs');
const G = require('diff-match-patch');
const F = require('dmp');

const LONE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// A string Lua can hold as UTF-8, or null when it has a lone surrogate.
const str = (s) => (typeof s === 'string' && LONE.test(s) ? null : s);
const diffs = (d) => (d.some((x) => LONE.test(x[1])) ? null : d.map((x) => [x[0], x[1]]));

function make(Lib, o) {
  const d = new Lib();
  if (o) {
    d.Diff_Timeout = o.diff_timeout; d.Diff_EditCost = o.diff_edit_cost;
    d.Match_Threshold = o.match_threshold; d.Match_Distance = o.match_distance;
    d.Patch_DeleteThreshold = o.patch_delete_threshold; d.Patch_Margin = o.patch_margin;
  }
  return d;
}

function tryit(f) {
  try { return {ok: f()}; } catch (e) { return {err: String(e && e.message || e)}; }
}

function apply(d, text, base) {
  const r = tryit(() => d.patch_apply(d.patch_fromText(text), base));
  if (r.err) return {err: r.err};
  return {text: str(r.ok[0]), lone: str(r.ok[0]) === null, results: r.ok[1]};
}

function run(c) {
  const g = make(G, c.opts), f = make(F, c.opts), out = {};
  switch (c.kind) {
  case 'diff': {
    const r = tryit(() => g.diff_main(c.a, c.b));
    if (r.err) { out.err = r.err; break; }
    out.raw = diffs(r.ok);
    g.diff_cleanupSemantic(r.ok);
    out.semantic = out.raw ? diffs(r.ok) : null;
    const e = g.diff_main(c.a, c.b);
    g.diff_cleanupEfficiency(e);
    out.efficiency = out.raw ? diffs(e) : null;
    out.levenshtein = g.diff_levenshtein(e);
    out.xindex = g.diff_xIndex(e, c.loc);
    break;
  }
  case 'patch': {
    const r = tryit(() => g.patch_toText(g.patch_make(c.a, c.b)));
    out.ref = r.err ? null : r.ok;
    out.referr = r.err || null;
    // our patch text, applied by both libraries to the exact base and to another one
    out.g_exact = apply(g, c.ours, c.a);
    out.f_exact = apply(f, c.ours, c.a);
    out.g_other = apply(g, c.ours, c.c);
    out.f_other = apply(f, c.ours, c.c);
    break;
  }
  case 'fromtext': {
    const rg = tryit(() => g.patch_toText(g.patch_fromText(c.text)));
    const rf = tryit(() => f.patch_toText(f.patch_fromText(c.text)));
    out.g = rg.err ? {err: rg.err} : {text: rg.ok};
    out.f = rf.err ? {err: rf.err} : {text: rf.ok};
    if (!rg.err) out.g_apply = apply(g, c.text, c.base);
    if (!rf.err) out.f_apply = apply(f, c.text, c.base);
    break;
  }
  case 'match': {
    const r = tryit(() => g.match_main(c.text, c.pattern, c.loc));
    out.r = r.err ? {err: r.err} : {loc: r.ok};
    break;
  }
  }
  return out;
}

const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
fs.writeFileSync(process.argv[3], JSON.stringify(cases.map(run)));
