import type { z } from "zod";
import { ApiError } from "./errors.ts";

/** Most schema issues listed in one error: enough to fix a request, bounded for a hostile one. */
const MAX_ISSUES = 50;

export interface Issue {
  path: string;
  message: string;
  code: string;
}

/** Zod issues as the API reports them: a dotted path per field. */
export function toIssues(issues: readonly z.core.$ZodIssue[], prefix = ""): Issue[] {
  return issues.slice(0, MAX_ISSUES).map((issue) => {
    const path = [prefix, ...issue.path.map(String)].filter((p) => p !== "").join(".");
    const keys = (issue as { keys?: string[] }).keys;
    return {
      path: path || (keys ? keys.join(",") : "(root)"),
      message: issue.message,
      code: issue.code,
    };
  });
}

/** Parses `value` or throws 400 VALIDATION_FAILED naming each bad field. */
export function parseOr400<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: string,
): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = toIssues(parsed.error.issues);
  throw new ApiError(
    400,
    "VALIDATION_FAILED",
    `invalid ${where}: ${issues.map((i) => i.path).join(", ")}`,
    {
      details: issues,
    },
  );
}

export { findUnstorable, MAX_JSON_DEPTH } from "../jobs/storable.ts";
