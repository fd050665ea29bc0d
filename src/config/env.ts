// ${NAME} and ${NAME:-default} expansion inside config strings.
const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export type Env = Readonly<Record<string, string | undefined>>;

/** Expands variables; unset ones without a default are reported through `missing`. */
export function expandEnv(text: string, env: Env, missing: (name: string) => void): string {
  if (!text.includes('${')) return text;
  return text.replace(VARIABLE, (_all, name: string, fallback: string | undefined) => {
    const value = env[name];
    if (value !== undefined) return value;
    if (fallback !== undefined) return fallback;
    missing(name);
    return '';
  });
}
