// Configuration is read from the environment once, at startup, into a frozen,
// typed object. A bad value stops the process with one line naming the
// variable and what it expects. Nothing else in the code reads process.env.
import { z } from "zod";

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function parseConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined>,
): Readonly<z.infer<S>> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const name = issue.path.join(".") || "(environment)";
      return `${name}: ${issue.message}${name in env ? ` (got ${JSON.stringify(env[name])})` : ""}`;
    });
    throw new ConfigError(`invalid configuration: ${lines.join("; ")}`);
  }
  return Object.freeze(parsed.data);
}

/**
 * Number("") and Number(" ") are 0: a variable that is set but left empty
 * (GRPC_PORT=) must be refused, not read as port 0 or a zero limit.
 */
const blankIsNotANumber = (value: unknown) =>
  typeof value === "string" && value.trim() === "" ? Number.NaN : value;

/** Environment helpers: every value arrives as a string or not at all. */
export const env = {
  port: (fallback: number) =>
    z
      .preprocess(
        blankIsNotANumber,
        z.coerce
          .number({ error: "expected a TCP port number (0-65535)" })
          .int("expected a whole number")
          .min(0, "expected a TCP port number (0-65535)")
          .max(65535, "expected a TCP port number (0-65535)"),
      )
      .default(fallback),
  int: (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
    z
      .preprocess(
        blankIsNotANumber,
        z.coerce
          .number({ error: `expected a whole number between ${min} and ${max}` })
          .int(`expected a whole number between ${min} and ${max}`)
          .min(min, `expected a whole number between ${min} and ${max}`)
          .max(max, `expected a whole number between ${min} and ${max}`),
      )
      .default(fallback),
  bool: (fallback: boolean) =>
    z
      .enum(["true", "false", "1", "0", "yes", "no"], { error: "expected true or false" })
      .default(fallback ? "true" : "false")
      .transform((v) => v === "true" || v === "1" || v === "yes"),
  string: (fallback: string) => z.string().min(1, "expected a non-empty value").default(fallback),
  optionalString: () =>
    z
      .string()
      .optional()
      .transform((v) => (v === "" ? undefined : v)),
  logLevel: () =>
    z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
      error: "expected one of fatal, error, warn, info, debug, trace, silent",
    }),
};

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}
