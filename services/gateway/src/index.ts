export { type AppOptions, buildApp, DEFAULT_BODY_LIMIT_BYTES, type GatewayDeps } from "./app";
export { errorBody, type OpenAIErrorBody } from "./errors";
export { createGrpcRouter } from "./grpc-router";
export { InFlight } from "./in-flight";
export { createModelCodec } from "./model-codec";
export type { ModelInfo } from "./model-info";
export type { RouterPort } from "./router-port";
export type { ChatMessage, Detokenizer, TextCodec, TokenPiece } from "./text-codec";
