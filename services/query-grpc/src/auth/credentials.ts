// Loads the credentials callers may present, once at startup, from files a
// Kubernetes Secret can mount: an API key file (hashes only) and JWT key
// material (an HS256 secret, a PEM public key, or a JWKS). A file that is
// missing or malformed stops startup with one line naming the variable.
import { createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { createLocalJWKSet, importSPKI, type JWTVerifyGetKey } from "jose";
import { z } from "zod";
import { ConfigError } from "../../../shared/src/config.js";
import { DEFAULT_STATEMENT_KINDS, STATEMENT_KINDS, type StatementKind } from "../statement-kinds.js";

export interface ApiKey {
  name: string;
  /** SHA-256 of the token, 32 bytes. */
  digest: Buffer;
  role: string;
  readOnly: boolean;
  /** Caps the statement timeout for this key; undefined = the server's maximum. */
  maxStatementMs: number | undefined;
  statements: ReadonlySet<StatementKind>;
  /** Sees and may cancel every caller's statements (ListQueries, CancelQuery). */
  admin: boolean;
}

export interface JwtSettings {
  key: Uint8Array | KeyObject | Awaited<ReturnType<typeof importSPKI>> | JWTVerifyGetKey;
  algorithms: string[];
  roleClaim: string;
  readOnlyClaim: string;
  /** Boolean claim that makes the caller an admin of the registry when true. */
  adminClaim: string;
  audience: string | undefined;
  issuer: string | undefined;
  clockToleranceSec: number;
  statements: ReadonlySet<StatementKind>;
}

export interface Credentials {
  apiKeys: ApiKey[];
  jwt: JwtSettings | undefined;
}

export interface CredentialSources {
  API_KEYS_FILE?: string | undefined;
  JWT_SECRET_FILE?: string | undefined;
  JWT_PUBLIC_KEY_FILE?: string | undefined;
  JWT_JWKS_FILE?: string | undefined;
  JWT_ROLE_CLAIM: string;
  JWT_READ_ONLY_CLAIM: string;
  JWT_ADMIN_CLAIM: string;
  JWT_AUDIENCE?: string | undefined;
  JWT_ISSUER?: string | undefined;
  JWT_CLOCK_TOLERANCE_S: number;
  JWT_STATEMENTS: StatementKind[];
}

const statementKind = z.enum(STATEMENT_KINDS);

const apiKeyEntry = z.object({
  name: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, "expected the hex SHA-256 of the token (64 hex digits)"),
  role: z.string().min(1),
  readOnly: z.boolean().default(false),
  maxStatementMs: z.number().int().positive().optional(),
  statements: z.array(statementKind).min(1).optional(),
  admin: z.boolean().default(false),
});

export async function loadCredentials(sources: CredentialSources): Promise<Credentials> {
  return {
    apiKeys: sources.API_KEYS_FILE ? loadApiKeys(sources.API_KEYS_FILE) : [],
    jwt: await loadJwt(sources),
  };
}

function loadApiKeys(path: string): ApiKey[] {
  const parsed = z.array(apiKeyEntry).safeParse(readJson("API_KEYS_FILE", path));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(
      `API_KEYS_FILE: ${path}: entry ${issue?.path.join(".")}: ${issue?.message ?? "invalid"}`,
    );
  }
  const names = new Set<string>();
  return parsed.data.map((entry) => {
    if (names.has(entry.name))
      throw new ConfigError(`API_KEYS_FILE: ${path}: duplicate key name "${entry.name}"`);
    names.add(entry.name);
    return {
      name: entry.name,
      digest: Buffer.from(entry.sha256, "hex"),
      role: entry.role,
      readOnly: entry.readOnly,
      maxStatementMs: entry.maxStatementMs,
      statements: new Set(entry.statements ?? DEFAULT_STATEMENT_KINDS),
      admin: entry.admin,
    };
  });
}

async function loadJwt(sources: CredentialSources): Promise<JwtSettings | undefined> {
  const given = [
    ["JWT_SECRET_FILE", sources.JWT_SECRET_FILE],
    ["JWT_PUBLIC_KEY_FILE", sources.JWT_PUBLIC_KEY_FILE],
    ["JWT_JWKS_FILE", sources.JWT_JWKS_FILE],
  ].filter(([, value]) => value);
  if (given.length === 0) return undefined;
  if (given.length > 1)
    throw new ConfigError(`set only one of ${given.map(([name]) => name).join(", ")} to verify JWTs`);
  const common = {
    roleClaim: sources.JWT_ROLE_CLAIM,
    readOnlyClaim: sources.JWT_READ_ONLY_CLAIM,
    adminClaim: sources.JWT_ADMIN_CLAIM,
    audience: sources.JWT_AUDIENCE,
    issuer: sources.JWT_ISSUER,
    clockToleranceSec: sources.JWT_CLOCK_TOLERANCE_S,
    statements: new Set(sources.JWT_STATEMENTS),
  };
  if (sources.JWT_SECRET_FILE) {
    const secret = readFileSync(sources.JWT_SECRET_FILE).toString("utf8").trim();
    if (Buffer.byteLength(secret) < 32)
      throw new ConfigError("JWT_SECRET_FILE: the HS256 secret must be at least 32 bytes");
    return { ...common, key: new TextEncoder().encode(secret), algorithms: ["HS256"] };
  }
  if (sources.JWT_PUBLIC_KEY_FILE) {
    const pem = readText("JWT_PUBLIC_KEY_FILE", sources.JWT_PUBLIC_KEY_FILE);
    const algorithm = pemAlgorithm(pem);
    try {
      return { ...common, key: await importSPKI(pem, algorithm), algorithms: [algorithm] };
    } catch (error) {
      throw new ConfigError(
        `JWT_PUBLIC_KEY_FILE: not a usable ${algorithm} public key: ${(error as Error).message}`,
      );
    }
  }
  const jwks = readJson("JWT_JWKS_FILE", sources.JWT_JWKS_FILE as string);
  try {
    return {
      ...common,
      key: createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]),
      algorithms: ["RS256", "ES256"],
    };
  } catch (error) {
    throw new ConfigError(`JWT_JWKS_FILE: not a JWKS: ${(error as Error).message}`);
  }
}

/** RS256 for RSA keys, ES256 for P-256 keys: the algorithm follows the key, never the token. */
function pemAlgorithm(pem: string): "RS256" | "ES256" {
  try {
    const key = createPublicKey(pem);
    if (key.asymmetricKeyType === "rsa") return "RS256";
    if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1")
      return "ES256";
    throw new ConfigError(
      `JWT_PUBLIC_KEY_FILE: expected an RSA or P-256 EC public key, got ${key.asymmetricKeyType}`,
    );
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(`JWT_PUBLIC_KEY_FILE: not a PEM public key: ${(error as Error).message}`);
  }
}

function readText(variable: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(
      `${variable}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
}

function readJson(variable: string, path: string): unknown {
  const text = readText(variable, path);
  try {
    return JSON.parse(text);
  } catch {
    throw new ConfigError(`${variable}: ${path} is not valid JSON`);
  }
}
