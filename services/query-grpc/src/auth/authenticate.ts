// Who is calling: turns the `authorization: Bearer <token>` metadata into a
// Caller (name, PostgreSQL role, read-only, limits) or an UNAUTHENTICATED
// failure. API keys are compared by SHA-256 digest in constant time; JWTs are
// verified with jose (signature, exp, nbf, aud, iss). With no credentials
// configured every caller is the anonymous login role (loopback-only unless
// explicitly allowed, see config.ts).
import { createHash, timingSafeEqual } from "node:crypto";
import { errors as joseErrors, jwtVerify } from "jose";
import { QueryFailure } from "../errors.js";
import { DEFAULT_STATEMENT_KINDS, STATEMENT_KINDS, type StatementKind } from "../statement-kinds.js";
import type { Credentials } from "./credentials.js";

export interface Caller {
  /** For logs: the API key's name or the JWT's subject; never the token. */
  name: string;
  method: "api_key" | "jwt" | "anonymous";
  /** The PostgreSQL role the request runs as (SET LOCAL ROLE); undefined = the login role. */
  role: string | undefined;
  readOnly: boolean;
  maxStatementMs: number | undefined;
  statements: ReadonlySet<StatementKind>;
  /** The JWT's claims as JSON, for set_config('request.jwt.claims', ...). */
  claims: string | undefined;
  /** Sees and may cancel every caller's statements, not only its own. */
  admin: boolean;
}

/** Every kind except the ones that reach outside the database. */
const ANONYMOUS_KINDS: ReadonlySet<StatementKind> = new Set(
  STATEMENT_KINDS.filter((k) => k !== "server_file" && k !== "system"),
);

export class Authenticator {
  constructor(private readonly credentials: Credentials | undefined) {}

  get required(): boolean {
    return this.credentials !== undefined;
  }

  async authenticate(authorization: string | undefined): Promise<Caller> {
    if (!this.credentials) {
      return {
        name: "anonymous",
        method: "anonymous",
        role: undefined,
        readOnly: false,
        maxStatementMs: undefined,
        statements: ANONYMOUS_KINDS,
        claims: undefined,
        // Every anonymous call is the same caller, so each already sees all of them.
        admin: false,
      };
    }
    const token = bearerToken(authorization);
    if (this.credentials.jwt && looksLikeJwt(token)) return this.verifyJwt(token);
    return this.matchApiKey(token);
  }

  private matchApiKey(token: string): Caller {
    const digest = createHash("sha256").update(token).digest();
    // Compare with every key, without stopping early, so timing says nothing about which matched.
    let found: (typeof this.credentials & object)["apiKeys"][number] | undefined;
    for (const key of this.credentials?.apiKeys ?? []) {
      if (timingSafeEqual(digest, key.digest) && !found) found = key;
    }
    if (!found) throw new QueryFailure("unauthenticated", "invalid credentials");
    return {
      name: found.name,
      method: "api_key",
      role: found.role,
      readOnly: found.readOnly,
      maxStatementMs: found.maxStatementMs,
      statements: found.statements,
      claims: undefined,
      admin: found.admin,
    };
  }

  private async verifyJwt(token: string): Promise<Caller> {
    const settings = this.credentials?.jwt;
    if (!settings) throw new QueryFailure("unauthenticated", "invalid credentials");
    let payload: Record<string, unknown>;
    try {
      const verified = await jwtVerify(token, settings.key as Parameters<typeof jwtVerify>[1], {
        algorithms: settings.algorithms,
        audience: settings.audience,
        issuer: settings.issuer,
        clockTolerance: settings.clockToleranceSec,
      });
      payload = verified.payload;
    } catch (error) {
      throw new QueryFailure("unauthenticated", `invalid token: ${jwtProblem(error)}`);
    }
    const role = claim(payload, settings.roleClaim);
    if (typeof role !== "string" || role === "") {
      throw new QueryFailure(
        "unauthenticated",
        `invalid token: claim "${settings.roleClaim}" must name a role`,
      );
    }
    return {
      name: typeof payload.sub === "string" ? `jwt:${payload.sub}` : "jwt",
      method: "jwt",
      role,
      readOnly: claim(payload, settings.readOnlyClaim) === true,
      maxStatementMs: undefined,
      statements: settings.statements.size > 0 ? settings.statements : new Set(DEFAULT_STATEMENT_KINDS),
      claims: JSON.stringify(payload),
      admin: claim(payload, settings.adminClaim) === true,
    };
  }
}

function bearerToken(authorization: string | undefined): string {
  if (!authorization) {
    throw new QueryFailure("unauthenticated", "missing credentials: send authorization: Bearer <token>");
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match?.[1]) {
    throw new QueryFailure("unauthenticated", "malformed authorization: expected Bearer <token>");
  }
  return match[1];
}

function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/** A claim by name, or by a dotted path into nested objects when no claim has the full name. */
function claim(payload: Record<string, unknown>, name: string): unknown {
  if (name in payload) return payload[name];
  let value: unknown = payload;
  for (const part of name.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function jwtProblem(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return "expired";
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `claim "${error.claim}" ${error.reason}`;
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return "signature does not verify";
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return "algorithm not allowed";
  if (error instanceof joseErrors.JWKSNoMatchingKey) return "no matching key";
  return "malformed";
}
