// The environment for a dsm process started by another: the caller's, minus every DSM_*
// variable, so a developer's own DSM_DATA_DIR or override never leaks into the child.
export function envWithoutDsm(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("DSM_")) env[k] = v;
  return { ...env, ...extra };
}
