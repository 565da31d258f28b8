export { loadConfig, parseConfig } from "./config";
export { ModelError, type ModelErrorCode } from "./errors";
export {
  type GenerationDefaults,
  loadGenerationConfig,
  parseGenerationConfig,
} from "./generation-config";
export { f32ToF16Bits } from "./half";
export { downloadFromHub, type HubOptions, type HubProgress, resolveModelDir } from "./hub";
export {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  LORA_TARGETS,
  type LoraAdapter,
  type LoraProjection,
  type LoraTarget,
  loadLoraAdapter,
  loraTargetShape,
  parseAdapterConfig,
} from "./lora";
export {
  type QuantizeCheckpointOptions,
  type QuantizedCheckpoint,
  writeQuantizedCheckpoint,
} from "./quantize-checkpoint";
export {
  AWQ_PACK_ORDER,
  dequantizeLinear,
  isQuantizable,
  parseQuantizationConfig,
  type QuantizationConfig,
  type QuantizedLinear,
  type QuantMethod,
} from "./quantized";
export { type RandomLoraOptions, writeRandomLoraAdapter } from "./random-lora";
export {
  DEFAULT_TOKENIZER_DIR,
  isShapeName,
  type ModelShape,
  type RandomModelOptions,
  SHAPES,
  SHARED_DIR,
  type ShapeName,
  writeRandomModel,
} from "./random-model";
export {
  type ConvertibleDtype,
  readSafetensorsHeader,
  readTensorData,
  type SafetensorsEntry,
  type SafetensorsHeader,
} from "./safetensors";
export { type LoadedShard, loadModelShard, readTensorRegion } from "./shard-loader";
export {
  planTensorShard,
  regionShape,
  shardRegion,
  type TensorRegion,
  type TensorShardPlan,
  type VocabSlice,
  vocabSlice,
} from "./tensor-parallel";
export * from "./tokenizer";
export * from "./types";
export {
  expectedWeightShapes,
  type LoadedModel,
  type LoadWeightsOptions,
  loadModel,
  loadWeights,
  validateWeights,
} from "./weights";
