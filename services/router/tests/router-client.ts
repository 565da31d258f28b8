import { credentials, Metadata } from "@grpc/grpc-js";
import { type GenerateEvent, GenerateRequest, RouterClient, type StatsResponse } from "@kiln/proto";

export interface StreamResult {
  readonly tokenIds: number[];
  readonly events: GenerateEvent[];
  readonly error: string | null;
}

export class TestRouterClient {
  readonly client: RouterClient;

  constructor(port: number) {
    this.client = new RouterClient(`127.0.0.1:${port}`, credentials.createInsecure());
  }

  /**
   * Runs one Generate stream to its end. `onToken` may return true to cancel the call (the
   * client going away); the result then holds what arrived before.
   */
  generate(
    partial: Partial<GenerateRequest>,
    onToken?: (numTokens: number) => boolean,
  ): Promise<StreamResult> {
    const call = this.client.generate(GenerateRequest.fromPartial(partial), new Metadata());
    const tokenIds: number[] = [];
    const events: GenerateEvent[] = [];
    return new Promise((resolve) => {
      let isDone = false;
      const done = (error: string | null) => {
        if (isDone) return;
        isDone = true;
        resolve({ tokenIds, events, error });
      };
      call.on("data", (event: GenerateEvent) => {
        events.push(event);
        if (event.token) tokenIds.push(...event.token.tokens.map((t) => t.tokenId));
        if (event.token && onToken?.(tokenIds.length)) {
          call.cancel();
          done("cancelled");
        }
      });
      call.on("error", (err: Error) => done(err.message));
      call.on("end", () => done(null));
    });
  }

  stats(): Promise<StatsResponse> {
    return new Promise((resolve, reject) => {
      this.client.stats({}, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  close(): void {
    this.client.close();
  }
}
