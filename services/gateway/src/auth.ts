/**
 * `KILN_API_KEYS="k1,k2"` → ["k1", "k2"]; unset or empty → null. These keys are admin keys of the
 * tenancy plugin (src/tenancy), which authenticates every /v1/* request.
 */
export function parseApiKeys(value: string | undefined): readonly string[] | null {
  const keys = (value ?? "")
    .split(",")
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
  return keys.length > 0 ? keys : null;
}
