import type { ChannelOptions } from "@grpc/grpc-js";

/**
 * HTTP/2 settings of Kiln's gRPC links, set deliberately (docs/operations.md, "Limits").
 *
 * Every Generate stream between gateway and router shares one HTTP/2 session (one channel).
 * What broke that session under a burst (issue 23) was not memory: it was resets. Each
 * cancelled call sends RST_STREAM, and nghttp2 (Node 20's, 1.61) treats more than about 1,000
 * resets in a burst, then 33 a second, as the "rapid reset" attack (CVE-2023-44487) and closes
 * the session with GOAWAY INTERNAL_ERROR ("Session closed with error code 2"), failing every
 * stream on it. Node 20 cannot tune that guard, so the gateway does not reset streams it no
 * longer wants: it aborts them through the router (services/gateway/src/grpc-router.ts).
 *
 * Memory: grpc-js lifts Node's 10 MB `maxSessionMemory` to unlimited unless told otherwise.
 * Kiln sets a finite ceiling instead, sized for the largest admitted load (the gateway admits at
 * most KILN_MAX_CONCURRENT_REQUESTS streams, reads every stream promptly and cuts off slow
 * clients at KILN_MAX_STREAM_BUFFER_BYTES): 10,000 streams × ~16 KiB of frames and state, with
 * headroom. Stream flow-control windows stay at HTTP/2's 64 KiB: events are small and read
 * promptly, so a larger window would only let a stalled stream hold more memory.
 */
export const SESSION_MEMORY_MB = 512;

/** The gateway's channel to the router, and the router's server (both ends of the session). */
export const ROUTER_LINK_OPTIONS: ChannelOptions = {
  "grpc-node.max_session_memory": SESSION_MEMORY_MB,
};

/** Steps carry whole batches (prompts of up to max_model_len tokens for every sequence). */
const MAX_STEP_MESSAGE_BYTES = 64 * 1024 * 1024;

/** The router's channel to a worker, and the worker's server. One step at a time per worker. */
export const WORKER_LINK_OPTIONS: ChannelOptions = {
  "grpc.max_receive_message_length": MAX_STEP_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_STEP_MESSAGE_BYTES,
  "grpc-node.max_session_memory": SESSION_MEMORY_MB,
};
