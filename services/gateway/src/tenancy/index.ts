export { KeySource, type KeySourceOptions } from "./key-source";
export {
  isModelAllowed,
  type KeyOwner,
  KeyTable,
  type TenantConfig,
  unlimitedTenant,
} from "./keys-file";
export {
  admitGeneration,
  canAccess,
  checkTenantModel,
  type KilnTenant,
  ownerOf,
  recordTenantStreamError,
  requireAdmin,
  type TenancyOptions,
  type TenantTicket,
  tenancyOf,
  tenancyPlugin,
  tenantCacheSalt,
  tenantMaxTokens,
} from "./plugin";
export { type Acquisition, type Lease, type LimitKind, TenantLimiter } from "./rate-limiter";
