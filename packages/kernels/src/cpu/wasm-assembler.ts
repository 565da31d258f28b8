/**
 * Just enough of a WebAssembly binary encoder to write the SIMD attention kernels in TypeScript
 * without a toolchain: one imported memory, functions with i32 parameters and typed locals,
 * structured control flow, i32 / f32 / SIMD128 arithmetic. Opcodes follow the WebAssembly 2.0
 * core specification (binary format, SIMD instructions prefixed by 0xfd).
 */

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof F32 | typeof V128;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    const isDone = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(isDone ? byte : byte | 0x80);
    if (isDone) return out;
  }
}

function name(s: string): number[] {
  const bytes = [...new TextEncoder().encode(s)];
  return [...uleb(bytes.length), ...bytes];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

/** The body of one function: call the instruction methods in order, then `finish()`. */
export class FunctionBody {
  private readonly code: number[] = [];

  /** Depth-relative labels are error-prone by hand; blocks and loops return their depth. */
  private depth = 0;

  private op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }

  private simd(opcode: number, ...imm: number[]): this {
    return this.op(0xfd, ...uleb(opcode), ...imm);
  }

  /** Opens `block` (a forward branch target); returns its depth for `br`/`brIf`. */
  block(): number {
    this.op(0x02, 0x40);
    return ++this.depth;
  }
  /** Opens `loop` (a backward branch target); returns its depth for `br`/`brIf`. */
  loop(): number {
    this.op(0x03, 0x40);
    return ++this.depth;
  }
  end(): this {
    this.depth--;
    return this.op(0x0b);
  }
  /** Branch to the block or loop opened at `target` (a value returned by block/loop). */
  br(target: number): this {
    return this.op(0x0c, ...uleb(this.depth - target));
  }
  brIf(target: number): this {
    return this.op(0x0d, ...uleb(this.depth - target));
  }

  get(local: number): this {
    return this.op(0x20, ...uleb(local));
  }
  set(local: number): this {
    return this.op(0x21, ...uleb(local));
  }
  i32(value: number): this {
    return this.op(0x41, ...sleb(value));
  }
  i32Load(offset = 0): this {
    return this.op(0x28, 2, ...uleb(offset));
  }
  f32Load(offset = 0): this {
    return this.op(0x2a, 2, ...uleb(offset));
  }
  f32Store(offset = 0): this {
    return this.op(0x38, 2, ...uleb(offset));
  }
  i32Add(): this {
    return this.op(0x6a);
  }
  i32Sub(): this {
    return this.op(0x6b);
  }
  i32Mul(): this {
    return this.op(0x6c);
  }
  i32LtS(): this {
    return this.op(0x48);
  }
  i32GtS(): this {
    return this.op(0x4a);
  }
  i32GeS(): this {
    return this.op(0x4e);
  }
  i32Eqz(): this {
    return this.op(0x45);
  }
  select(): this {
    return this.op(0x1b);
  }
  f32Add(): this {
    return this.op(0x92);
  }

  v128Load(offset = 0): this {
    return this.simd(0x00, 2, ...uleb(offset));
  }
  v128Store(offset = 0): this {
    return this.simd(0x0b, 2, ...uleb(offset));
  }
  v128Zero(): this {
    return this.simd(0x0c, ...new Array<number>(16).fill(0));
  }
  f32x4Splat(): this {
    return this.simd(0x13);
  }
  f32x4ExtractLane(lane: number): this {
    return this.simd(0x1f, lane);
  }
  f32x4Add(): this {
    return this.simd(0xe4);
  }
  f32x4Mul(): this {
    return this.simd(0xe6);
  }

  finish(): number[] {
    if (this.depth !== 0) throw new Error(`wasm assembler: ${this.depth} unclosed blocks`);
    return [...this.code, 0x0b];
  }
}

export interface FunctionDef {
  readonly name: string;
  readonly numParams: number; // all i32
  /** Types of the locals after the parameters. */
  readonly locals: readonly ValType[];
  readonly body: number[];
}

/** A module importing `env.memory` (at least one page) and exporting every function. */
export function assembleModule(functions: readonly FunctionDef[]): Uint8Array {
  const section = (id: number, content: number[]) => [id, ...uleb(content.length), ...content];
  const types = functions.map((f) => [0x60, ...vec(new Array(f.numParams).fill([I32])), 0]);
  const memoryImport = [...name("env"), ...name("memory"), 0x02, 0x00, 0x01];
  const codes = functions.map((f) => {
    const locals = vec(f.locals.map((t) => [1, t]));
    const body = [...locals, ...f.body];
    return [...uleb(body.length), ...body];
  });
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(types)),
    ...section(2, vec([memoryImport])),
    ...section(3, vec(functions.map((_, i) => uleb(i)))),
    ...section(7, vec(functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vec(codes)),
  ]);
}
