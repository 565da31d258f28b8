/**
 * WGSL of the portable tier (ADR 0019): f32 only, no subgroups, workgroups of at most 256
 * invocations, at most 9 storage buffers per kernel. Every kernel reads its static shape from a
 * small uniform written once at load; per-step sizes come from the dispatch size, except the
 * GEMM's row count, read from the step's `Dims` uniform. Layouts: row-major, token-major
 * activations; the KV pool of a layer is [numBlocks, numKvHeads, blockSize, headDim].
 */

/** Per-step sizes, written once per step (one 16-byte uniform). */
const DIMS = `struct Dims { numTokens: u32, numSamples: u32, numSeqs: u32, pad: u32 }`;

/**
 * y[m, yCol0 + wRow0 + n] (+)= Σ_k x[m, k] · w[n, k] (+ bias[wRow0 + n]) for the rows of one
 * weight chunk (w holds rows wRow0 .. wRow0 + n of the full [N, K] matrix). 16×16 tiles.
 */
export const GEMM_WGSL = `
${DIMS}
struct Params { n: u32, k: u32, ldx: u32, ldy: u32, yCol0: u32, wRow0: u32, flags: u32, pad: u32 }
const ACCUMULATE = 1u; const ROWS_ARE_SAMPLES = 2u; const HAS_BIAS = 4u;
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
var<workgroup> xs: array<array<f32, 16>, 16>;
var<workgroup> ws: array<array<f32, 16>, 16>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let numRows = select(dims.numTokens, dims.numSamples, (p.flags & ROWS_ARE_SAMPLES) != 0u);
  let row = wg.y * 16u + lid.y;
  let col = wg.x * 16u + lid.x;
  let wRow = wg.x * 16u + lid.y;
  var acc = 0.0;
  for (var k0 = 0u; k0 < p.k; k0 += 16u) {
    let k = k0 + lid.x;
    var xv = 0.0;
    if (row < numRows && k < p.k) { xv = x[row * p.ldx + k]; }
    xs[lid.y][lid.x] = xv;
    var wv = 0.0;
    if (wRow < p.n && k < p.k) { wv = w[wRow * p.k + k]; }
    ws[lid.y][lid.x] = wv;
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) { acc += xs[lid.y][kk] * ws[lid.x][kk]; }
    workgroupBarrier();
  }
  if (row >= numRows || col >= p.n) { return; }
  if ((p.flags & HAS_BIAS) != 0u) { acc += bias[p.wRow0 + col]; }
  let at = row * p.ldy + p.yCol0 + p.wRow0 + col;
  if ((p.flags & ACCUMULATE) != 0u) { y[at] = y[at] + acc; } else { y[at] = acc; }
}`;

/** out[r] = x[rows[r]] / rms(x[rows[r]]) · weight; one workgroup per output row. */
export const RMS_NORM_WGSL = `
struct Params { dim: u32, eps: f32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
var<workgroup> partial: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let src = rows[wg.x] * p.dim;
  let dst = wg.x * p.dim;
  var s = 0.0;
  for (var i = lid.x; i < p.dim; i += 256u) { let v = x[src + i]; s += v * v; }
  partial[lid.x] = s;
  workgroupBarrier();
  for (var half = 128u; half > 0u; half >>= 1u) {
    if (lid.x < half) { partial[lid.x] += partial[lid.x + half]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(partial[0] / f32(p.dim) + p.eps);
  for (var i = lid.x; i < p.dim; i += 256u) { out[dst + i] = (x[src + i] * inv) * weight[i]; }
}`;

/** Rotate-half RoPE in place on numHeads heads of each row; cos/sin are [numTokens, headDim/2]. */
export const ROPE_WGSL = `
struct Params { rowStride: u32, numHeads: u32, headDim: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> buf: array<f32>;
@group(0) @binding(2) var<storage, read> cosT: array<f32>;
@group(0) @binding(3) var<storage, read> sinT: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let halfDim = p.headDim / 2u;
  let idx = wg.x * 64u + lid.x;
  if (idx >= p.numHeads * halfDim) { return; }
  let t = wg.y;
  let i = idx % halfDim;
  let off = t * p.rowStride + (idx / halfDim) * p.headDim;
  let c = cosT[t * halfDim + i];
  let s = sinT[t * halfDim + i];
  let x1 = buf[off + i];
  let x2 = buf[off + halfDim + i];
  buf[off + i] = x1 * c - x2 * s;
  buf[off + halfDim + i] = x2 * c + x1 * s;
}`;

/** Writes each token's k and v (from its qkv row) into its slot of the layer's K and V pools. */
export const KV_WRITE_WGSL = `
struct Params { qkvLen: u32, kOff: u32, vOff: u32, kvDim: u32, numKvHeads: u32, headDim: u32, blockSize: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> slots: array<u32>;
@group(0) @binding(3) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(4) var<storage, read_write> vCache: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let idx = wg.x * 64u + lid.x;
  if (idx >= p.kvDim) { return; }
  let t = wg.y;
  let slot = slots[t];
  let block = slot / p.blockSize;
  let dst = ((block * p.numKvHeads + idx / p.headDim) * p.blockSize + slot % p.blockSize) * p.headDim + idx % p.headDim;
  kCache[dst] = qkv[t * p.qkvLen + p.kOff + idx];
  vCache[dst] = qkv[t * p.qkvLen + p.vOff + idx];
}`;

/** out[t, i] = silu(gateUp[t, i]) · gateUp[t, ffn + i]. */
export const SILU_MUL_WGSL = `
struct Params { ffn: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gateUp: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = wg.x * 64u + lid.x;
  if (i >= p.ffn) { return; }
  let t = wg.y;
  let g = gateUp[t * 2u * p.ffn + i];
  out[t * p.ffn + i] = g / (1.0 + exp(-g)) * gateUp[t * 2u * p.ffn + p.ffn + i];
}`;

/** x[t] = table[tokens[t]] for the tokens whose id falls in this chunk of the table. */
export const EMBED_WGSL = `
struct Params { hidden: u32, row0: u32, numRows: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let i = wg.x * 64u + lid.x;
  let t = wg.y;
  let tok = tokens[t];
  if (i >= p.hidden || tok < p.row0 || tok >= p.row0 + p.numRows) { return; }
  x[t * p.hidden + i] = table[(tok - p.row0) * p.hidden + i];
}`;

/**
 * Causal paged attention, one workgroup per (head, token): THREADS invocations split the
 * token's context (positions 0..pos), each with an online softmax over its keys, then merge.
 * GQA: head h reads KV head h / groupSize. Keys are found through the sequence's block table.
 */
export function attentionWgsl(headDim: number, numThreads: number): string {
  return `
struct Params { qkvLen: u32, numKvHeads: u32, blockSize: u32, groupSize: u32, outStride: u32, scale: f32, pad0: u32, pad1: u32 }
const HD: u32 = ${headDim}u;
const T: u32 = ${numThreads}u;
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> kCache: array<f32>;
@group(0) @binding(3) var<storage, read> vCache: array<f32>;
@group(0) @binding(4) var<storage, read> tokenSeq: array<u32>;
@group(0) @binding(5) var<storage, read> positions: array<u32>;
@group(0) @binding(6) var<storage, read> tableOffsets: array<u32>;
@group(0) @binding(7) var<storage, read> tables: array<u32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;
var<workgroup> sm: array<f32, T>;
var<workgroup> sl: array<f32, T>;
var<workgroup> sacc: array<f32, ${headDim * numThreads}>;
@compute @workgroup_size(T)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let h = wg.x;
  let t = wg.y;
  let tid = lid.x;
  let kvh = h / p.groupSize;
  let contextLen = positions[t] + 1u;
  let table = tableOffsets[tokenSeq[t]];
  var q: array<f32, HD>;
  var acc: array<f32, HD>;
  for (var d = 0u; d < HD; d++) { q[d] = qkv[t * p.qkvLen + h * HD + d]; acc[d] = 0.0; }
  var m = -3.0e38;
  var l = 0.0;
  for (var j = tid; j < contextLen; j += T) {
    let block = tables[table + j / p.blockSize];
    let base = ((block * p.numKvHeads + kvh) * p.blockSize + j % p.blockSize) * HD;
    var s = 0.0;
    for (var d = 0u; d < HD; d++) { s += q[d] * kCache[base + d]; }
    s *= p.scale;
    let mNew = max(m, s);
    let corr = exp(m - mNew);
    let e = exp(s - mNew);
    l = l * corr + e;
    for (var d = 0u; d < HD; d++) { acc[d] = acc[d] * corr + e * vCache[base + d]; }
    m = mNew;
  }
  sm[tid] = m;
  sl[tid] = l;
  for (var d = 0u; d < HD; d++) { sacc[tid * HD + d] = acc[d]; }
  workgroupBarrier();
  var mAll = -3.0e38;
  for (var i = 0u; i < T; i++) { mAll = max(mAll, sm[i]); }
  var lAll = 0.0;
  for (var i = 0u; i < T; i++) { lAll += sl[i] * exp(sm[i] - mAll); }
  for (var d = tid; d < HD; d += T) {
    var o = 0.0;
    for (var i = 0u; i < T; i++) { o += sacc[i * HD + d] * exp(sm[i] - mAll); }
    out[t * p.outStride + h * HD + d] = o / lAll;
  }
}`;
}

/**
 * Greedy sampling of one logits row per workgroup: the argmax (ties to the lowest id) and its
 * raw log-probability −log Σ exp(l − max). result[2r] = id, result[2r + 1] = f32 bits.
 */
export const GREEDY_WGSL = `
struct Params { vocab: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<u32>;
var<workgroup> bestV: array<f32, 256>;
var<workgroup> bestI: array<u32, 256>;
var<workgroup> sums: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let base = wg.x * p.vocab;
  var v = -3.4e38;
  var idx = 0xffffffffu;
  for (var i = lid.x; i < p.vocab; i += 256u) {
    let l = logits[base + i];
    if (l > v || idx == 0xffffffffu) { v = l; idx = i; }
  }
  bestV[lid.x] = v;
  bestI[lid.x] = idx;
  workgroupBarrier();
  for (var half = 128u; half > 0u; half >>= 1u) {
    if (lid.x < half) {
      let ov = bestV[lid.x + half];
      let oi = bestI[lid.x + half];
      if (ov > bestV[lid.x] || (ov == bestV[lid.x] && oi < bestI[lid.x])) { bestV[lid.x] = ov; bestI[lid.x] = oi; }
    }
    workgroupBarrier();
  }
  let mx = bestV[0];
  var s = 0.0;
  for (var i = lid.x; i < p.vocab; i += 256u) { s += exp(logits[base + i] - mx); }
  sums[lid.x] = s;
  workgroupBarrier();
  for (var half = 128u; half > 0u; half >>= 1u) {
    if (lid.x < half) { sums[lid.x] += sums[lid.x + half]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    result[2u * wg.x] = bestI[0];
    result[2u * wg.x + 1u] = bitcast<u32>(-log(sums[0]));
  }
}`;
