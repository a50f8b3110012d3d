// The bridge refuses to start on a bad environment, with a message that names
// the variable, and refuses to listen beyond loopback with nobody checking credentials.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError } from "../../shared/src/config.js";
import { loadConfig } from "./config.js";

const t = suite("http-bridge configuration");

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    assert.instance(error, ConfigError);
    return error as ConfigError;
  }
  assert.unreachable(`expected ${JSON.stringify(env)} to be refused`);
  throw new Error("unreachable");
}

t("the defaults load into a frozen object listening on loopback", () => {
  const config = loadConfig({});
  assert.is(config.HOST, "127.0.0.1");
  assert.is(config.PORT, 5000);
  assert.ok(Object.isFrozen(config));
});

t("a port that is not a number is refused, naming PORT", () => {
  const error = configError({ PORT: "abc" });
  assert.match(error.message, /\bPORT\b/);
  assert.match(error.message, /"abc"/);
});

t("a zero body limit is refused, naming MAX_BODY_BYTES", () => {
  const error = configError({ MAX_BODY_BYTES: "0" });
  assert.match(error.message, /\bMAX_BODY_BYTES\b/);
});

t("listening on 0.0.0.0 without UPSTREAM_AUTH or ALLOW_UNAUTHENTICATED is refused", () => {
  const error = configError({ HOST: "0.0.0.0" });
  assert.match(error.message, /\bHOST\b/);
  assert.match(error.message, /UPSTREAM_AUTH/);
});

t("listening on 0.0.0.0 is allowed once credentials are declared upstream or explicitly waived", () => {
  assert.is(loadConfig({ HOST: "0.0.0.0", UPSTREAM_AUTH: "true" }).HOST, "0.0.0.0");
  assert.is(loadConfig({ HOST: "0.0.0.0", ALLOW_UNAUTHENTICATED: "true" }).HOST, "0.0.0.0");
});

t.run();
