import { credentials, Metadata } from "@grpc/grpc-js";
import {
  type GenerateEvent,
  GenerateRequest,
  ROUTER_LINK_OPTIONS,
  RouterClient,
} from "@kiln/proto";

/**
 * Time to first token straight from the router over gRPC, without the gateway: the baseline
 * for the gateway's added latency. Resolves with null when the router refused the request.
 */
export function routerTtft(
  client: RouterClient,
  requestId: string,
  promptTokenIds: readonly number[],
  maxTokens: number,
): Promise<number | null> {
  const startedAt = performance.now();
  return new Promise((resolve) => {
    let ttftMs: number | null = null;
    const request = GenerateRequest.fromPartial({
      requestId,
      promptTokenIds: [...promptTokenIds],
      maxTokens,
      ignoreEos: true,
      n: 1,
    });
    const call = client.generate(request, new Metadata());
    call.on("data", (event: GenerateEvent) => {
      if (ttftMs === null && event.token) ttftMs = performance.now() - startedAt;
    });
    call.on("error", () => resolve(null));
    call.on("end", () => resolve(ttftMs));
  });
}

export function routerClient(address: string): RouterClient {
  return new RouterClient(address, credentials.createInsecure(), ROUTER_LINK_OPTIONS);
}
