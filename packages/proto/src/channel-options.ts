import type { ChannelOptions } from "@grpc/grpc-js";

/**
 * HTTP/2 settings of Kiln's gRPC links, set deliberately (docs/operations.md, "Limits").
 *
 * Every Generate stream between gateway and router shares one HTTP/2 session. Node's http2
 * (and so grpc-js) caps a session's memory at 10 MB by default (`maxSessionMemory`): the
 * buffered frames, header tables and per-stream state of every open stream count against it.
 * A burst of a few thousand streams crosses it, and Node then tears the whole session down
 * ("Session closed with error code 2"), failing every stream on it: healthy requests included.
 * That was the cause of the 500s under a 2,000–5,000 stream burst (issue 23).
 *
 * The cap is a ceiling, not an allocation. Kiln bounds what a session can hold elsewhere: the
 * gateway admits at most KILN_MAX_CONCURRENT_REQUESTS streams and reads every stream promptly
 * (slow clients are cut off at KILN_MAX_STREAM_BUFFER_BYTES instead of back-pressuring the
 * router), and the router bounds its waiting queue. So the session limit is sized for the
 * largest admitted load: 10,000 streams × ~16 KiB of frames and state, with headroom.
 */
export const SESSION_MEMORY_MB = 512;

/** Stream flow-control windows stay at HTTP/2's 64 KiB: events are small and read promptly. */

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
