import type { FastifyRequest } from "fastify";

/** Who made a request, set by the tenancy plugin when it is installed. */
export interface KilnTenant {
  readonly name: string;
  readonly isAdmin: boolean;
}

declare module "fastify" {
  interface FastifyRequest {
    kilnTenant?: KilnTenant;
  }
}

/** The owner recorded on a new file or batch: the tenant's name, or null without tenancy. */
export function ownerOf(request: FastifyRequest): string | null {
  return request.kilnTenant?.name ?? null;
}

/**
 * Whether `request` may see an object owned by `owner`: admins and requests without a tenant
 * see everything (tenancy off); a tenant sees only its own objects.
 */
export function canSee(request: FastifyRequest, owner: string | null): boolean {
  const tenant = request.kilnTenant;
  if (!tenant || tenant.isAdmin) return true;
  return owner === tenant.name;
}
