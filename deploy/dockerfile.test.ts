// Keeps the Dockerfile from rotting without a Docker engine: parses it, checks
// what the runtime image promises, then performs its stages outside Docker.
// Each stage gets a temp directory standing for its root filesystem; COPY
// takes files from the build context (the repo's files, `git ls-files`,
// filtered by .dockerignore) or from an earlier stage; RUN runs through the
// host's shell (node and npm are the host's: the image is node:20, so is CI).
// Then the runtime stage's ENTRYPOINT + CMD starts the bridge, which must
// answer GET /healthz and exit 0 on SIGTERM.
//
// Slow by nature (npm ci twice, tsc once): about a minute with a warm npm cache.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { parseAllDocuments } from "yaml";
import { HTTP_BRIDGE_NODE_FLAGS } from "../services/http-bridge/src/node-flags.js";

const t = suite("Dockerfile");

const repo = fileURLToPath(new URL("..", import.meta.url));

// ---------------------------------------------------------------- parsing

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  name: string | undefined;
  image: string;
  instructions: Instruction[];
}

/** Instructions of a Dockerfile: comments dropped, `\` continuations joined. */
function parseInstructions(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending = "";
  let startLine = 0;
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line.startsWith("#") || (!pending && !line)) return;
    if (!pending) startLine = index + 1;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const full = (pending + line).trim();
    pending = "";
    if (!full) return;
    const match = /^(\S+)\s*(.*)$/s.exec(full);
    if (match)
      instructions.push({
        keyword: (match[1] as string).toUpperCase(),
        args: match[2] as string,
        line: startLine,
      });
  });
  return instructions;
}

/** Splits instructions into stages; ARGs before the first FROM are substituted into FROM. */
function parseStages(text: string): Stage[] {
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const instruction of parseInstructions(text)) {
    if (instruction.keyword === "FROM") {
      const [image = "", as, name] = substitute(instruction.args, globalArgs).split(/\s+/);
      stages.push({ name: as?.toUpperCase() === "AS" ? name : undefined, image, instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== "ARG")
        throw new Error(`line ${instruction.line}: ${instruction.keyword} before FROM`);
      const [key = "", value = ""] = instruction.args.split("=", 2);
      globalArgs.set(key.trim(), value.trim());
    } else {
      (stages.at(-1) as Stage).instructions.push(instruction);
    }
  }
  return stages;
}

function substitute(text: string, vars: Map<string, string>): string {
  return text.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => {
    const key = (a ?? b) as string;
    return vars.get(key) ?? "";
  });
}

/** An exec-form (JSON array) argument list, or undefined for the shell form. */
function execForm(args: string): string[] | undefined {
  if (!args.trim().startsWith("[")) return undefined;
  const parsed = JSON.parse(args) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === "string"))
    throw new Error(`not a JSON array of strings: ${args}`);
  return parsed;
}

/** ENV KEY=VALUE [KEY=VALUE...] (quotes allowed) or the legacy ENV KEY VALUE. */
function parseEnv(args: string): Array<[string, string]> {
  if (!/^\S+=/.test(args)) {
    const [key = "", ...rest] = args.split(/\s+/);
    return [[key, rest.join(" ")]];
  }
  const pairs: Array<[string, string]> = [];
  for (const match of args.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g)) {
    let value = match[2] as string;
    if (value.startsWith('"')) value = JSON.parse(value) as string;
    else if (value.startsWith("'")) value = value.slice(1, -1);
    pairs.push([match[1] as string, value]);
  }
  return pairs;
}

/** The runtime stage's configuration: what `docker run IMAGE` would start, and as whom. */
interface ImageConfig {
  env: Record<string, string>;
  user: string | undefined;
  workdir: string;
  entrypoint: string[] | undefined;
  cmd: string[] | undefined;
  entrypointRaw: string | undefined;
}

function imageConfig(stage: Stage): ImageConfig {
  const config: ImageConfig = {
    env: {},
    user: undefined,
    workdir: "/",
    entrypoint: undefined,
    cmd: undefined,
    entrypointRaw: undefined,
  };
  for (const { keyword, args } of stage.instructions) {
    if (keyword === "ENV") for (const [k, v] of parseEnv(args)) config.env[k] = v;
    if (keyword === "USER") config.user = args.trim();
    if (keyword === "WORKDIR") config.workdir = posix.resolve(config.workdir, args.trim());
    if (keyword === "ENTRYPOINT") {
      config.entrypointRaw = args;
      config.entrypoint = execForm(args);
    }
    if (keyword === "CMD") config.cmd = execForm(args);
  }
  return config;
}

// ---------------------------------------------------------------- .dockerignore

function globToRegExp(pattern: string): RegExp {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === "*" && pattern[i + 1] === "*") {
      i++;
      if (pattern[i + 1] === "/") {
        i++;
        source += "(?:.*/)?";
      } else source += ".*";
    } else if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else source += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

/**
 * Docker's .dockerignore rules: patterns in order, the last that matches a
 * path or one of its parent directories decides, `!` re-includes.
 */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"))
    .map((line) => {
      const negate = line.startsWith("!");
      const pattern = posix
        .normalize((negate ? line.slice(1) : line).trim())
        .replace(/^\/+/, "")
        .replace(/\/+$/, "");
      return { negate, regexp: globToRegExp(pattern) };
    });
  return (path) => {
    const parts = path.split("/");
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const { negate, regexp } of rules) if (prefixes.some((p) => regexp.test(p))) excluded = !negate;
    return !excluded;
  };
}

/** The build context: the repo's files (committed or not, minus gitignored), filtered by .dockerignore. */
function contextFiles(): string[] {
  const listed = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: repo,
    encoding: "utf8",
  });
  const included = dockerignore(readFileSync(join(repo, ".dockerignore"), "utf8"));
  return listed
    .split("\0")
    .filter((f) => f && included(f) && existsSync(join(repo, f)) && statSync(join(repo, f)).isFile());
}

// ---------------------------------------------------------------- performing the stages

function commandEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // Nothing of the npm process that runs these tests, nor NODE_ENV/NODE_OPTIONS, leaks in.
  for (const [key, value] of Object.entries(process.env))
    if (!/^npm_/i.test(key) && key !== "NODE_ENV" && key !== "NODE_OPTIONS" && key !== "INIT_CWD")
      env[key] = value;
  return {
    ...env,
    npm_config_prefer_offline: "true",
    npm_config_audit: "false",
    npm_config_fund: "false",
    npm_config_update_notifier: "false",
    ...extra,
  };
}

function runStep(command: string[], cwd: string, env: NodeJS.ProcessEnv, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0] as string, command.slice(1), {
      cwd,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${what} exited with ${code}:\n${output}`)),
    );
  });
}

/** A path inside a stage's root directory. */
function inRoot(root: string, path: string): string {
  return join(root, posix.normalize(path).replace(/^\/+/, ""));
}

async function performStages(stages: Stage[], work: string, context: string[]): Promise<Map<Stage, string>> {
  const roots = new Map<Stage, string>();
  const byName = new Map<string, Stage>();
  for (const [index, stage] of stages.entries()) {
    const root = join(work, `stage-${index}-${stage.name ?? "unnamed"}`);
    const base = byName.get(stage.image);
    if (base) cpSync(roots.get(base) as string, root, { recursive: true, verbatimSymlinks: true });
    else mkdirSync(root, { recursive: true });
    roots.set(stage, root);
    if (stage.name) byName.set(stage.name, stage);

    let workdir = base ? imageConfig(base).workdir : "/";
    const env: Record<string, string> = base ? { ...imageConfig(base).env } : {};
    for (const { keyword, args, line } of stage.instructions) {
      const where = `Dockerfile:${line} ${keyword}`;
      switch (keyword) {
        case "WORKDIR":
          workdir = posix.resolve(workdir, args.trim());
          mkdirSync(inRoot(root, workdir), { recursive: true });
          break;
        case "ENV":
          for (const [k, v] of parseEnv(args)) env[k] = v;
          break;
        case "COPY": {
          const words = execForm(args) ?? args.split(/\s+/);
          const flags = words.filter((w) => w.startsWith("--"));
          const paths = words.filter((w) => !w.startsWith("--"));
          const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
          const dest = paths.pop() as string;
          const destination = inRoot(root, posix.resolve(workdir, dest));
          const intoDirectory = dest.endsWith("/") || dest === "." || paths.length > 1;
          for (const source of paths) {
            if (/[*?[]/.test(source)) throw new Error(`${where}: wildcards are not supported by this test`);
            if (from) {
              const sourceStage = byName.get(from);
              if (!sourceStage) throw new Error(`${where}: no stage named ${from}`);
              const src = inRoot(roots.get(sourceStage) as string, source);
              const target =
                statSync(src).isDirectory() || !intoDirectory
                  ? destination
                  : join(destination, posix.basename(source));
              cpSync(src, target, { recursive: true, verbatimSymlinks: true });
            } else {
              const prefix = posix
                .normalize(source)
                .replace(/^\.\/?/, "")
                .replace(/\/$/, "");
              const matched = context.filter((f) => !prefix || f === prefix || f.startsWith(`${prefix}/`));
              if (matched.length === 0) throw new Error(`${where}: ${source} is not in the build context`);
              for (const file of matched) {
                const target =
                  file === prefix
                    ? intoDirectory
                      ? join(destination, posix.basename(file))
                      : destination
                    : join(destination, prefix ? file.slice(prefix.length + 1) : file);
                mkdirSync(dirname(target), { recursive: true });
                cpSync(join(repo, file), target);
              }
            }
          }
          break;
        }
        case "RUN": {
          const command = execForm(args) ?? ["/bin/sh", "-c", args];
          const cwd = inRoot(root, workdir);
          mkdirSync(cwd, { recursive: true });
          await runStep(command, cwd, commandEnv(env), `${where} ${args}`);
          break;
        }
        case "ARG":
        case "USER":
        case "EXPOSE":
        case "LABEL":
        case "ENTRYPOINT":
        case "CMD":
          break; // image metadata: read by imageConfig()
        default:
          throw new Error(
            `${where}: this test cannot perform ${keyword}; teach it, or keep the Dockerfile simple`,
          );
      }
    }
  }
  return roots;
}

// ---------------------------------------------------------------- helpers

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitForHealthz(url: string, child: ChildProcess, output: () => string): Promise<Response> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the bridge exited with ${child.exitCode}:\n${output()}`);
    try {
      return await fetch(url, { signal: AbortSignal.timeout(1000) });
    } catch {
      if (Date.now() > deadline) throw new Error(`no answer from ${url} in 20 s:\n${output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The scripts the Kubernetes manifests start with the image (container args after ENTRYPOINT node and its flags). */
function manifestEntryPoints(): string[] {
  const scripts: string[] = [];
  for (const file of ["query-grpc.yaml", "http-bridge.yaml"]) {
    const text = readFileSync(join(repo, "kustomize/base", file), "utf8");
    for (const doc of parseAllDocuments(text)) {
      const object = doc.toJS() as {
        kind?: string;
        spec?: { template?: { spec?: { containers?: Array<{ image?: string; args?: string[] }> } } };
      } | null;
      if (object?.kind !== "Deployment") continue;
      for (const c of object.spec?.template?.spec?.containers ?? [])
        if (c.image?.startsWith("querygate")) {
          // Node's flags come first; the script is the first argument that is not one.
          const script = c.args?.find((arg) => !arg.startsWith("-"));
          if (script) scripts.push(script);
        }
    }
  }
  assert.is(scripts.length, 2, "both Deployments start a script from the image");
  return scripts;
}

const dockerfile = readFileSync(join(repo, "Dockerfile"), "utf8");

// ================================================================ tests

t("the runtime stage runs node directly, as a numeric non-root user, with NODE_ENV=production", () => {
  const stages = parseStages(dockerfile);
  assert.ok(stages.length >= 2, "a multi-stage build");
  const runtime = stages.at(-1) as Stage;
  assert.match(runtime.image, /^node:20[\w.-]*-slim$/, "the runtime stage starts from a slim Node 20 image");
  const config = imageConfig(runtime);
  assert.match(
    config.user ?? "",
    /^\d+(:\d+)?$/,
    "USER is numeric (uid[:gid]), so runAsNonRoot can verify it",
  );
  assert.is.not(Number((config.user ?? "0").split(":")[0]), 0, "USER is not root");
  assert.is(config.env.NODE_ENV, "production");
  assert.equal(config.entrypoint, ["node"], `ENTRYPOINT is exec-form ["node"], not: ${config.entrypointRaw}`);
  assert.equal(
    config.cmd,
    [...HTTP_BRIDGE_NODE_FLAGS, "dist/services/http-bridge/src/main.js"],
    "CMD defaults to the bridge after its node flags (node-flags.ts), exec form",
  );
  assert.is(config.workdir, "/app");
  for (const { keyword, args } of runtime.instructions)
    if (keyword === "RUN")
      assert.not.match(args, /npm (ci|install)(?!.*--omit=dev)/, "dev dependencies at runtime");
});

t(
  "the build stage installs every dependency and compiles; the runtime gets production dependencies only",
  () => {
    const stages = parseStages(dockerfile);
    const runs = (stage: Stage) => stage.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    const build = stages.find((s) => runs(s).some((r) => /\bnpm run build\b/.test(r)));
    assert.ok(build, "a stage runs `npm run build`");
    assert.ok(
      runs(build as Stage).some((r) => /\bnpm ci\b/.test(r) && !/--omit=dev/.test(r)),
      "the build stage runs `npm ci` with dev dependencies",
    );
    assert.ok(
      stages.some((s) => runs(s).some((r) => /\bnpm ci\b.*--omit=dev/.test(r))),
      "a stage runs `npm ci --omit=dev`",
    );
    const runtimeCopies = (stages.at(-1) as Stage).instructions
      .filter((i) => i.keyword === "COPY")
      .map((i) => i.args);
    for (const needed of ["node_modules", "dist", "proto/gen", "package.json"])
      assert.ok(
        runtimeCopies.some((c) => c.includes(needed)),
        `the runtime stage copies ${needed}`,
      );
  },
);

t("the build context leaves out dependencies, build output, local data and secrets", () => {
  const included = dockerignore(readFileSync(join(repo, ".dockerignore"), "utf8"));
  for (const path of [
    "node_modules/pg/package.json",
    "dist/services/http-bridge/src/main.js",
    ".data/postgres/PG_VERSION",
    ".git/config",
    ".env",
    "kustomize/overlays/aws/secrets/database.env",
    "services/query-grpc/src/execute.test.ts",
  ])
    assert.not.ok(included(path), `${path} must not be in the build context`);
  for (const path of [
    "package.json",
    "package-lock.json",
    "tsconfig.build.json",
    "services/http-bridge/src/main.ts",
    "proto/gen/querygate/v1/query.ts",
  ])
    assert.ok(included(path), `${path} must be in the build context`);
});

t(
  "the image's steps build the app, and its default command serves /healthz and the console, and exits 0 on SIGTERM",
  async () => {
    const stages = parseStages(dockerfile);
    const work = mkdtempSync(join(tmpdir(), "querygate-dockerfile-"));
    let child: ChildProcess | undefined;
    try {
      const roots = await performStages(stages, work, contextFiles());
      const runtime = stages.at(-1) as Stage;
      const config = imageConfig(runtime);
      const cwd = inRoot(roots.get(runtime) as string, config.workdir);
      for (const path of [
        "package.json",
        "node_modules/@grpc/grpc-js",
        "dist/services/query-grpc/src/main.js",
        "dist/services/http-bridge/src/console/public/console.js",
        ...manifestEntryPoints(),
      ])
        assert.ok(existsSync(join(cwd, path)), `the runtime image has ${path}`);
      assert.not.ok(
        existsSync(join(cwd, "node_modules/typescript")),
        "the runtime image has dev dependencies",
      );

      const command = [...(config.entrypoint ?? []), ...(config.cmd ?? [])];
      const port = await freePort();
      let output = "";
      // Like a container: only PATH (to find node), the image's ENV, and the settings of this run.
      child = spawn(command[0] as string, command.slice(1), {
        cwd,
        env: {
          PATH: process.env.PATH,
          ...config.env,
          PORT: String(port),
          HOST: "127.0.0.1",
          QUERY_GRPC_TARGET: "127.0.0.1:1",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      child.stdout?.on("data", (c: Buffer) => {
        output += c.toString();
      });
      child.stderr?.on("data", (c: Buffer) => {
        output += c.toString();
      });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        (child as ChildProcess).on("exit", (code, signal) => resolve({ code, signal })),
      );

      const response = await waitForHealthz(`http://127.0.0.1:${port}/healthz`, child, () => output);
      assert.is(response.status, 200, `GET /healthz answered ${response.status}`);
      // Served from the bundle `npm run build` made: the image has no esbuild to make one.
      for (const [path, type] of [
        ["/console", /^text\/html/],
        ["/console/console.js", /^text\/javascript/],
      ] as const) {
        const asset = await fetch(`http://127.0.0.1:${port}${path}`);
        assert.is(asset.status, 200, `GET ${path} answered ${asset.status}:\n${output}`);
        assert.match(asset.headers.get("content-type") ?? "", type);
      }

      child.kill("SIGTERM");
      const result = await Promise.race([
        exited,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`no exit 10 s after SIGTERM:\n${output}`)), 10_000),
        ),
      ]);
      assert.equal(result, { code: 0, signal: null }, `exit after SIGTERM:\n${output}`);
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      rmSync(work, { recursive: true, force: true });
    }
  },
);

t.run();
