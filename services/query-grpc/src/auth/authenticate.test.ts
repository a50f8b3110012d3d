import { Writable } from "node:stream";
import { Metadata, status } from "@grpc/grpc-js";
import { pino } from "pino";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  execute,
  executeError,
  grpcClient,
  postQuery,
  startBridgeFor,
  startGrpc,
} from "../../../../test/helpers.js";
import { as, bearer, jwt, roles, TOKENS } from "../../../../test/roles.js";
import { ConfigError } from "../../../shared/src/config.js";
import { loadConfig } from "../config.js";

const t = suite("authentication");

let client: ReturnType<typeof grpcClient>;
let bridgeUrl: string;
const auditLines: Array<Record<string, unknown>> = [];

t.before(async () => {
  const fixture = await roles();
  const audit = new Writable({
    write(chunk, _encoding, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) auditLines.push(JSON.parse(line));
      done();
    },
  });
  const server = await startGrpc(fixture.env, pino({ level: "info" }, audit));
  client = grpcClient(server.target);
  bridgeUrl = (await startBridgeFor(server.target)).url;
});

t("a call without credentials is UNAUTHENTICATED before any SQL runs", async () => {
  const error = await executeError(client, { sql: "select 1" });
  assert.is(error.code, status.UNAUTHENTICATED);
  assert.match(error.details, /missing credentials/);
});

t("over HTTP a missing credential is 401 with WWW-Authenticate: Bearer", async () => {
  const response = await postQuery(bridgeUrl, { query: "select 1" });
  assert.is(response.status, 401);
  assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer/);
  assert.is(response.body.error.code, "unauthenticated");
});

t("an unknown API key is refused over gRPC and HTTP", async () => {
  const error = await executeError(client, { sql: "select 1" }, as("not-a-key"));
  assert.is(error.code, status.UNAUTHENTICATED);
  const response = await postQuery(bridgeUrl, { query: "select 1" }, bearer("not-a-key"));
  assert.is(response.status, 401);
});

t("a malformed authorization header is refused", async () => {
  const metadata = new Metadata();
  metadata.set("authorization", "Basic dXNlcjpwYXNz");
  const error = await executeError(client, { sql: "select 1" }, metadata);
  assert.is(error.code, status.UNAUTHENTICATED);
  assert.match(error.details, /Bearer/);
});

t("an API key runs its statements as the key's PostgreSQL role", async () => {
  const result = await execute(client, { sql: "select current_user, session_user" }, as(TOKENS.writer));
  assert.equal(result.rows, [["writer", "authenticator"]]);
});

t("a JWT signed with the HS256 secret runs as its role claim, with its claims visible to SQL", async () => {
  const token = await jwt({ claims: { role: "reader", sub: "bob", tenant: 7 } });
  const result = await execute(
    client,
    { sql: "select current_user, current_setting('request.jwt.claims')::json->>'tenant'" },
    as(token),
  );
  assert.equal(result.rows, [["reader", "7"]]);
});

t("an expired JWT is UNAUTHENTICATED and says so", async () => {
  const token = await jwt({ expiresIn: Math.floor(Date.now() / 1000) - 120 });
  const error = await executeError(client, { sql: "select 1" }, as(token));
  assert.is(error.code, status.UNAUTHENTICATED);
  assert.match(error.details, /expired/);
});

t("a JWT for another audience, another issuer, or not yet valid is refused", async () => {
  for (const token of [
    await jwt({ audience: "someone-else" }),
    await jwt({ issuer: "elsewhere" }),
    await jwt({ notBefore: Math.floor(Date.now() / 1000) + 600 }),
  ]) {
    const error = await executeError(client, { sql: "select 1" }, as(token));
    assert.is(error.code, status.UNAUTHENTICATED);
  }
});

t("a JWT with a bad signature or a wrong algorithm is refused", async () => {
  const token = await jwt();
  const tampered = `${token.slice(0, -4)}AAAA`;
  assert.is((await executeError(client, { sql: "select 1" }, as(tampered))).code, status.UNAUTHENTICATED);
  // Signed with the RSA key: this server only accepts HS256.
  const rs = await jwt({ alg: "RS256" });
  assert.is((await executeError(client, { sql: "select 1" }, as(rs))).code, status.UNAUTHENTICATED);
});

t("a JWT without a role claim is refused", async () => {
  const token = await jwt({ claims: { role: undefined } });
  const error = await executeError(client, { sql: "select 1" }, as(token));
  assert.is(error.code, status.UNAUTHENTICATED);
  assert.match(error.details, /claim "role"/);
});

t("RS256 (PEM public key) and ES256 (JWKS) tokens are verified", async () => {
  const fixture = await roles();
  const rsa = grpcClient((await startGrpc(fixture.rsaEnv)).target);
  const rows = await execute(rsa, { sql: "select current_user" }, as(await jwt({ alg: "RS256" })));
  assert.equal(rows.rows, [["writer"]]);
  const ec = grpcClient((await startGrpc(fixture.jwksEnv)).target);
  const ecRows = await execute(
    ec,
    { sql: "select current_user" },
    as(await jwt({ alg: "ES256", claims: { role: "reader" } })),
  );
  assert.equal(ecRows.rows, [["reader"]]);
  // The HS256 server's secret means nothing to the RS256 server.
  assert.is((await executeError(rsa, { sql: "select 1" }, as(await jwt()))).code, status.UNAUTHENTICATED);
});

t("a role the login role cannot switch to is PERMISSION_DENIED", async () => {
  const token = await jwt({ claims: { role: "postgres" } });
  const error = await executeError(client, { sql: "select 1" }, as(token));
  assert.is(error.code, status.PERMISSION_DENIED);
  assert.match(error.details, /cannot run as role "postgres"/);
});

t("the audit line names caller, role, kinds and fingerprint, never the token or literal values", async () => {
  const metadata = as(TOKENS.writer);
  metadata.set("x-request-id", "audit-1");
  await execute(
    client,
    {
      sql: "select 'very-secret-literal' as s where $1::text is not null",
      params: [{ textValue: "param-secret" }],
    },
    metadata,
  );
  const line = auditLines.find((l) => l.requestId === "audit-1");
  assert.ok(line, "an audit line for the request");
  assert.is(line.caller, "ingest");
  assert.is(line.role, "writer");
  assert.equal(line.kinds, ["read"]);
  assert.match(String(line.fingerprint), /^[0-9a-f]{16}$/);
  assert.is(line.outcome, "OK");
  assert.is(line.rows, 1);
  const text = JSON.stringify(auditLines);
  assert.not.match(text, /very-secret-literal/);
  assert.not.match(text, /param-secret/);
  assert.not.match(text, new RegExp(TOKENS.writer));
});

t("without credentials query-grpc refuses to listen beyond loopback unless told to", async () => {
  const base = { DATABASE_URL: "postgres://u:p@db:5432/x", GRPC_HOST: "0.0.0.0" };
  assert.throws(
    () => loadConfig(base),
    (e: unknown) => e instanceof ConfigError && /GRPC_HOST/.test(e.message),
  );
  assert.is(loadConfig({ ...base, ALLOW_UNAUTHENTICATED: "true" }).GRPC_HOST, "0.0.0.0");
  assert.is(loadConfig({ ...base, API_KEYS_FILE: "/etc/keys.json" }).GRPC_HOST, "0.0.0.0");
});

t("a malformed API key file stops startup with a line naming the variable", async () => {
  const { writeFileSync, mkdtempSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const file = join(mkdtempSync(join(tmpdir(), "qg-keys-")), "keys.json");
  writeFileSync(file, JSON.stringify([{ name: "x", sha256: "abc", role: "reader" }]));
  try {
    await startGrpc({ API_KEYS_FILE: file });
    assert.unreachable("startup should fail");
  } catch (error) {
    assert.instance(error, ConfigError);
    assert.match((error as Error).message, /^API_KEYS_FILE: .*sha256/);
  }
});

t.run();
