/**
 * Ownership of files and batches, from the tenancy plugin (src/tenancy): a file or batch belongs
 * to the tenant that created it; other tenants get 404, admins and unauthenticated setups see all.
 */
export { canAccess as canSee, ownerOf } from "../tenancy";
