// A database set up the way the README tells operators to: one low-privilege
// login role (`authenticator`) that may switch to the caller roles `reader`,
// `writer` and `app_admin`, tables with grants and row-level security, and the
// credential files query-grpc reads (API keys, an HS256 secret, an RS256 PEM
// key, an ES256 JWKS). Created once per test run.
import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { exportJWK, SignJWT } from "jose";
import { adminClient, databaseUrlAs } from "./helpers.js";

export const TOKENS = {
  reader: "reader-token-0123456789",
  writer: "writer-token-0123456789",
  readOnlyWriter: "readonly-writer-token-0123456789",
  admin: "admin-token-0123456789",
  selectOnly: "select-only-token-0123456789",
  capped: "capped-token-0123456789",
  watcher: "watcher-token-0123456789",
} as const;

export interface RoleFixture {
  /** DATABASE_URL of the login role. */
  url: string;
  /** Environment for query-grpc with API keys and the HS256 secret configured. */
  env: Record<string, string>;
  /** The same with an RS256 public key instead of the HS256 secret. */
  rsaEnv: Record<string, string>;
  /** The same with an ES256 JWKS instead of the HS256 secret. */
  jwksEnv: Record<string, string>;
  hsSecret: Uint8Array;
  rsaKey: KeyObject;
  ecKey: KeyObject;
}

let fixture: Promise<RoleFixture> | undefined;

export function roles(): Promise<RoleFixture> {
  fixture ??= create();
  return fixture;
}

async function create(): Promise<RoleFixture> {
  const admin = await adminClient();
  await admin.query(`
    create role authenticator login password 'authenticator' noinherit;
    create role reader nologin;
    create role writer nologin;
    create role app_admin nologin;
    grant reader, writer, app_admin to authenticator;
    grant reader to writer;
    create schema app;
    grant usage on schema app to reader, writer, app_admin;
    grant create on schema app to app_admin;
    create table app.items (id serial primary key, name text not null);
    grant select on app.items to reader;
    grant insert, update, delete on app.items to writer;
    grant usage on sequence app.items_id_seq to writer;
    grant all on app.items, app.items_id_seq to app_admin;
    create table app.secrets (id int primary key, secret text);
    grant all on app.secrets to app_admin;
    create table app.notes (owner text not null default current_setting('request.jwt.claims', true)::json->>'sub', body text);
    alter table app.notes enable row level security;
    create policy own_notes on app.notes using (owner = current_setting('request.jwt.claims', true)::json->>'sub');
    grant select, insert on app.notes to writer;
    -- A function that switches role while it runs, as badly written SECURITY INVOKER code might.
    create function app.escalate_and_write() returns int language plpgsql as $$
    begin
      perform set_config('role', 'app_admin', true);
      insert into app.secrets values (1, 'written as app_admin');
      return 1;
    end $$;
    grant execute on function app.escalate_and_write() to writer;
  `);

  const dir = mkdtempSync(join(tmpdir(), "querygate-auth-"));
  const sha = (token: string) => createHash("sha256").update(token).digest("hex");
  const keysFile = join(dir, "api-keys.json");
  writeFileSync(
    keysFile,
    JSON.stringify([
      { name: "reporting", sha256: sha(TOKENS.reader), role: "reader", readOnly: true },
      { name: "ingest", sha256: sha(TOKENS.writer), role: "writer" },
      { name: "ingest-ro", sha256: sha(TOKENS.readOnlyWriter), role: "writer", readOnly: true },
      { name: "ops", sha256: sha(TOKENS.admin), role: "app_admin" },
      { name: "select-only", sha256: sha(TOKENS.selectOnly), role: "writer", statements: ["read"] },
      { name: "capped", sha256: sha(TOKENS.capped), role: "reader", maxStatementMs: 300 },
      // Sees and cancels every caller's statements (the registry), with a reader's grants.
      { name: "watcher", sha256: sha(TOKENS.watcher), role: "reader", readOnly: true, admin: true },
    ]),
  );
  const hsSecret = new TextEncoder().encode("a-shared-secret-of-at-least-32-bytes!!");
  const secretFile = join(dir, "jwt-secret");
  writeFileSync(secretFile, Buffer.from(hsSecret));

  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pemFile = join(dir, "jwt-public.pem");
  writeFileSync(pemFile, rsa.publicKey.export({ type: "spki", format: "pem" }));

  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...(await exportJWK(ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" };
  const jwksFile = join(dir, "jwks.json");
  writeFileSync(jwksFile, JSON.stringify({ keys: [jwk] }));

  const url = await databaseUrlAs("authenticator", "authenticator");
  const common = {
    DATABASE_URL: url,
    API_KEYS_FILE: keysFile,
    JWT_AUDIENCE: "querygate",
    JWT_ISSUER: "tests",
  };
  return {
    url,
    env: { ...common, JWT_SECRET_FILE: secretFile },
    rsaEnv: { ...common, JWT_PUBLIC_KEY_FILE: pemFile },
    jwksEnv: { ...common, JWT_JWKS_FILE: jwksFile },
    hsSecret,
    rsaKey: rsa.privateKey,
    ecKey: ec.privateKey,
  };
}

export interface TokenOptions {
  claims?: Record<string, unknown>;
  alg?: "HS256" | "RS256" | "ES256";
  audience?: string;
  issuer?: string;
  expiresIn?: string | number;
  notBefore?: string | number;
}

/** A signed JWT for the fixture's keys. */
export async function jwt(options: TokenOptions = {}): Promise<string> {
  const f = await roles();
  const alg = options.alg ?? "HS256";
  let signer = new SignJWT({ role: "writer", sub: "alice", ...options.claims })
    .setProtectedHeader(alg === "ES256" ? { alg, kid: "ec-1" } : { alg })
    .setIssuedAt()
    .setAudience(options.audience ?? "querygate")
    .setIssuer(options.issuer ?? "tests")
    .setExpirationTime(options.expiresIn ?? "5m");
  if (options.notBefore !== undefined) signer = signer.setNotBefore(options.notBefore);
  const key = alg === "HS256" ? f.hsSecret : alg === "RS256" ? f.rsaKey : f.ecKey;
  return signer.sign(key);
}

/** gRPC metadata carrying the token as a Bearer credential. */
export function as(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}

export function bearer(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}
