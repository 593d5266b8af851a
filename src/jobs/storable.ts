/** Deepest JSON nesting accepted in a job (Postgres and JSON.stringify both recurse). */
export const MAX_JSON_DEPTH = 64;

/** Where a JSON value holds something Postgres would refuse, and what. */
export interface StorableIssue {
  path: string;
  message: string;
  code: string;
}

/**
 * Finds what Postgres would refuse in a JSON value, so a bad job is turned away here rather than
 * failing a statement shared with other jobs: strings with NUL (jsonb cannot hold U+0000), lone
 * UTF-16 surrogates (not valid Unicode), and nesting beyond MAX_JSON_DEPTH. Iterative, so a
 * hostile depth cannot overflow the stack. Returns the first problem's path, or null.
 */
export function findUnstorable(value: unknown, root = ""): StorableIssue | null {
  const stack: Array<{ value: unknown; path: string; depth: number }> = [
    { value, path: root, depth: 0 },
  ];
  while (stack.length > 0) {
    const item = stack.pop()!;
    const bad = badString(item.value);
    if (bad) return { path: item.path || "(root)", message: bad, code: "unstorable_string" };
    if (item.value === null || typeof item.value !== "object") continue;
    if (item.depth >= MAX_JSON_DEPTH) {
      return {
        path: item.path || "(root)",
        message: `nested deeper than ${MAX_JSON_DEPTH} levels`,
        code: "too_deep",
      };
    }
    if (Array.isArray(item.value)) {
      item.value.forEach((v, i) => {
        stack.push({ value: v, path: join(item.path, String(i)), depth: item.depth + 1 });
      });
    } else {
      for (const [key, v] of Object.entries(item.value)) {
        const badKey = badString(key);
        if (badKey)
          return {
            path: join(item.path, key.slice(0, 64)),
            message: `key ${badKey}`,
            code: "unstorable_string",
          };
        stack.push({ value: v, path: join(item.path, key), depth: item.depth + 1 });
      }
    }
  }
  return null;
}

function badString(value: unknown): string | null {
  if (typeof value !== "string") return null;
  if (value.includes("\u0000")) return "contains U+0000, which Postgres cannot store";
  if (!value.isWellFormed()) return "contains a lone UTF-16 surrogate";
  return null;
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}
