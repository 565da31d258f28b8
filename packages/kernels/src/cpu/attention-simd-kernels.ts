import { assembleModule, FunctionBody, I32, V128, type ValType } from "./wasm-assembler";

/**
 * The two inner loops of paged attention as WebAssembly SIMD128 (4 f32 lanes), over one query
 * row and one KV head, walking the block table themselves. Every pointer and size is in bytes;
 * rows are `rowBytes` = 4 × headDim long with headDim a multiple of 4.
 *
 *   scoreRow(q, table, numKeys, headOff, blockStride, blockSize, rowBytes, scores)
 *     scores[j] = q · K[j] for j < numKeys, K[j] at table[j / blockSize] × blockStride
 *     + headOff + (j mod blockSize) × rowBytes.
 *   mixRow(weights, table, numKeys, headOff, blockStride, blockSize, rowBytes, acc)
 *     acc = Σ_j weights[j] × V[j], V[j] addressed like K[j].
 *
 * Both take four keys per pass so four independent accumulator chains hide FMA latency.
 */

// Parameter slots shared by both functions.
const P0 = 0; // q (scoreRow) or weights (mixRow)
const TABLE = 1;
const NUM_KEYS = 2;
const HEAD_OFF = 3;
const BLOCK_STRIDE = 4;
const BLOCK_SIZE = 5;
const ROW = 6;
const P7 = 7; // scores (scoreRow) or acc (mixRow)
const NUM_PARAMS = 8;
// Locals.
const J = 8; // keys done
const N = 9; // keys left in the current block
const K = 10; // address of the current key (or value) row
const D = 11; // byte offset within a row
const K1 = 12;
const K2 = 13;
const K3 = 14;
const WJ = 15; // mixRow: address of weights[J]
const X = 16; // v128: q chunk (scoreRow), accumulator chunk (mixRow)
const A0 = 17; // v128 × 4: accumulators (scoreRow) or splatted weights (mixRow)
const LOCALS: ValType[] = [I32, I32, I32, I32, I32, I32, I32, I32, V128, V128, V128, V128, V128];

/** Opens the per-block loop: K = first row of the next block, N = keys to take from it. */
function enterBlock(f: FunctionBody, done: number): void {
  f.get(J).get(NUM_KEYS).i32GeS().brIf(done);
  f.get(TABLE).i32Load().get(BLOCK_STRIDE).i32Mul().get(HEAD_OFF).i32Add().set(K);
  f.get(TABLE).i32(4).i32Add().set(TABLE);
  f.get(NUM_KEYS).get(J).i32Sub().set(N);
  // N = N > blockSize ? blockSize : N
  f.get(BLOCK_SIZE).get(N).get(N).get(BLOCK_SIZE).i32GtS().select().set(N);
}

/** local += 16; loop again while local < rowBytes. */
function nextChunk(f: FunctionBody, loop: number): void {
  f.get(D).i32(16).i32Add().set(D);
  f.get(D).get(ROW).i32LtS().brIf(loop);
}

/** Advances J, K (and WJ when mixing) past `count` keys. */
function advance(f: FunctionBody, count: number, hasWeights: boolean): void {
  f.get(J).i32(count).i32Add().set(J);
  f.get(N).i32(count).i32Sub().set(N);
  f.get(K).get(ROW).i32(count).i32Mul().i32Add().set(K);
  if (hasWeights)
    f.get(WJ)
      .i32(4 * count)
      .i32Add()
      .set(WJ);
}

function rowAddresses(f: FunctionBody): void {
  f.get(K).get(ROW).i32Add().set(K1);
  f.get(K1).get(ROW).i32Add().set(K2);
  f.get(K2).get(ROW).i32Add().set(K3);
}

function scoreRowBody(): number[] {
  const f = new FunctionBody();
  const rows = [K, K1, K2, K3];
  /** Pushes scores + 4 × J, then the horizontal sum of accumulator `acc`; stores at +offset. */
  const storeSum = (acc: number, offset: number) => {
    f.get(P7).get(J).i32(4).i32Mul().i32Add();
    f.get(acc).f32x4ExtractLane(0).get(acc).f32x4ExtractLane(1).f32Add();
    f.get(acc).f32x4ExtractLane(2).f32Add().get(acc).f32x4ExtractLane(3).f32Add();
    f.f32Store(offset);
  };
  f.i32(0).set(J);
  const done = f.block();
  const blocks = f.loop();
  enterBlock(f, done);
  const quadsDone = f.block();
  const quads = f.loop();
  f.get(N).i32(4).i32LtS().brIf(quadsDone);
  rowAddresses(f);
  for (let m = 0; m < 4; m++) f.v128Zero().set(A0 + m);
  f.i32(0).set(D);
  const dims = f.loop();
  f.get(P0).get(D).i32Add().v128Load().set(X);
  for (let m = 0; m < 4; m++) {
    f.get(A0 + m)
      .get(X)
      .get(rows[m]!)
      .get(D)
      .i32Add()
      .v128Load()
      .f32x4Mul()
      .f32x4Add();
    f.set(A0 + m);
  }
  nextChunk(f, dims);
  f.end();
  for (let m = 0; m < 4; m++) storeSum(A0 + m, 4 * m);
  advance(f, 4, false);
  f.br(quads).end().end();
  const restDone = f.block();
  const rest = f.loop();
  f.get(N).i32Eqz().brIf(restDone);
  f.v128Zero().set(A0).i32(0).set(D);
  const restDims = f.loop();
  f.get(A0).get(P0).get(D).i32Add().v128Load().get(K).get(D).i32Add().v128Load();
  f.f32x4Mul().f32x4Add().set(A0);
  nextChunk(f, restDims);
  f.end();
  storeSum(A0, 0);
  advance(f, 1, false);
  f.br(rest).end().end();
  f.br(blocks).end().end();
  return f.finish();
}

function mixRowBody(): number[] {
  const f = new FunctionBody();
  const rows = [K, K1, K2, K3];
  const accAddress = () => f.get(P7).get(D).i32Add();
  f.i32(0).set(D);
  const zero = f.loop();
  accAddress().v128Zero().v128Store();
  nextChunk(f, zero);
  f.end();
  f.i32(0).set(J).get(P0).set(WJ);
  const done = f.block();
  const blocks = f.loop();
  enterBlock(f, done);
  const quadsDone = f.block();
  const quads = f.loop();
  f.get(N).i32(4).i32LtS().brIf(quadsDone);
  rowAddresses(f);
  for (let m = 0; m < 4; m++)
    f.get(WJ)
      .f32Load(4 * m)
      .f32x4Splat()
      .set(A0 + m);
  f.i32(0).set(D);
  const dims = f.loop();
  accAddress();
  accAddress().v128Load();
  for (let m = 0; m < 4; m++) {
    f.get(A0 + m)
      .get(rows[m]!)
      .get(D)
      .i32Add()
      .v128Load()
      .f32x4Mul()
      .f32x4Add();
  }
  f.v128Store();
  nextChunk(f, dims);
  f.end();
  advance(f, 4, true);
  f.br(quads).end().end();
  const restDone = f.block();
  const rest = f.loop();
  f.get(N).i32Eqz().brIf(restDone);
  f.get(WJ).f32Load().f32x4Splat().set(A0).i32(0).set(D);
  const restDims = f.loop();
  accAddress();
  accAddress().v128Load().get(A0).get(K).get(D).i32Add().v128Load().f32x4Mul().f32x4Add();
  f.v128Store();
  nextChunk(f, restDims);
  f.end();
  advance(f, 1, true);
  f.br(rest).end().end();
  f.br(blocks).end().end();
  return f.finish();
}

/** Kernels bound to one memory. */
export interface AttentionSimdKernels {
  scoreRow(
    q: number,
    table: number,
    numKeys: number,
    headOff: number,
    blockStride: number,
    blockSize: number,
    rowBytes: number,
    scores: number,
  ): void;
  mixRow(
    weights: number,
    table: number,
    numKeys: number,
    headOff: number,
    blockStride: number,
    blockSize: number,
    rowBytes: number,
    acc: number,
  ): void;
}

/** The parts of the WebAssembly JS API used here (the repository's TS libs do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: unknown };
  Memory: new (desc: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer };
}

const wasmApi = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
let compiled: object | null | undefined;

/** The compiled module, or null where WebAssembly SIMD is unavailable. Compiled once. */
function compiledModule(): object | null {
  if (compiled !== undefined) return compiled;
  const bytes = assembleModule([
    { name: "scoreRow", numParams: NUM_PARAMS, locals: LOCALS, body: scoreRowBody() },
    { name: "mixRow", numParams: NUM_PARAMS, locals: LOCALS, body: mixRowBody() },
  ]);
  compiled = wasmApi?.validate(bytes) ? new wasmApi.Module(bytes) : null;
  return compiled;
}

export interface BoundAttentionKernels {
  readonly kernels: AttentionSimdKernels;
  /** The kernels' whole memory, `numPages` × 64 KiB, zeroed; it never grows. */
  readonly buffer: ArrayBuffer;
}

/**
 * A fresh memory of `numPages` 64 KiB pages with the kernels instantiated over it; null where
 * WebAssembly SIMD is unavailable.
 */
export function tryCreateAttentionKernels(numPages: number): BoundAttentionKernels | null {
  const module = compiledModule();
  if (module === null || wasmApi === undefined) return null;
  const memory = new wasmApi.Memory({ initial: numPages, maximum: numPages });
  const instance = new wasmApi.Instance(module, { env: { memory } });
  return { kernels: instance.exports as AttentionSimdKernels, buffer: memory.buffer };
}
