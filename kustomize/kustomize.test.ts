// Builds the base and every overlay with `kubectl kustomize`, validates each
// object against the Kubernetes OpenAPI schemas (kubernetes-models), and checks
// what the manifests promise: hardened pods, probes, graceful stops, network
// isolation, disruption budgets, per-environment shape, and where secrets come
// from.
//
// The builds run on a copy of what a fresh clone of kustomize/ holds (the files
// git tracks or would track, never an ignored local file), so an overlay that
// needs a file nobody committed fails here. The aws overlays take every
// credential from the cluster (ExternalSecrets, the CloudNativePG operator).
// CloudNativePG has no npm models: its Cluster and Pooler are validated against
// the strict JSON schemas vendored in kustomize/schemas/ (ajv).
//
// Without kubectl (or a standalone kustomize) on PATH the suite is skipped with
// a message, in CI too (no registry we reach ships a current kustomize); where
// kubectl is present every check runs and fails the build.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { ExternalSecret } from "@kubernetes-models/external-secrets/external-secrets.io/v1";
import { Ajv } from "ajv";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { StorageClass } from "kubernetes-models/storage.k8s.io/v1";
import {
  ConfigMap,
  type IContainer,
  type IPodTemplateSpec,
  Namespace,
  Secret,
  Service,
  ServiceAccount,
} from "kubernetes-models/v1";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { HTTP_BRIDGE_NODE_FLAGS } from "../services/http-bridge/src/node-flags.js";
import { QUERY_GRPC_NODE_FLAGS } from "../services/query-grpc/src/node-flags.js";

const t = suite("kustomize overlays");

const repo = fileURLToPath(new URL("..", import.meta.url));
const kustomizeDir = join(repo, "kustomize");

/** What is built: the base (runs as-is) and every overlay. */
const BUILDS = {
  base: "base",
  minikube: "overlays/minikube",
  aws: "overlays/aws",
  "aws-rds": "overlays/aws-rds",
} as const;
type BuildName = keyof typeof BUILDS;
const OVERLAYS = ["minikube", "aws", "aws-rds"] as const satisfies readonly BuildName[];
const AWS_BUILDS = ["aws", "aws-rds"] as const satisfies readonly BuildName[];

/** A ConfigMap the user creates out of band (components/external-database/README.md). */
const EXTERNAL_CONFIGMAPS = new Set(["rds-ca-bundle"]);

// ---------------------------------------------------------------- tools

function findKustomize(): { command: string; args: (dir: string) => string[] } | undefined {
  if (spawnSync("kubectl", ["version", "--client"], { stdio: "ignore" }).status === 0)
    return { command: "kubectl", args: (dir) => ["kustomize", dir] };
  if (spawnSync("kustomize", ["version"], { stdio: "ignore" }).status === 0)
    return { command: "kustomize", args: (dir) => ["build", dir] };
  return undefined;
}

const kustomize = findKustomize();
if (!kustomize) {
  console.log(
    "kustomize overlays: SKIPPED: kubectl (or kustomize) is not on PATH; install kubectl to build and validate the manifests",
  );
}

/** A test that is skipped when there is no kustomize to build with. */
function it(name: string, fn: () => void | Promise<void>): void {
  if (kustomize) t(name, fn);
  else t.skip(name, fn);
}

// ---------------------------------------------------------------- types

type Labels = Record<string, string>;

interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels; annotations?: Labels };
  // biome-ignore lint/suspicious/noExplicitAny: parsed YAML; typed views are taken per kind below
  spec?: any;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  [key: string]: unknown;
}

interface Workload {
  kind: "Deployment" | "StatefulSet";
  name: string;
  namespace: string;
  // biome-ignore lint/suspicious/noExplicitAny: the workload's spec, as parsed
  spec: any;
  template: IPodTemplateSpec;
  labels: Labels;
  containers: IContainer[];
}

// ---------------------------------------------------------------- schemas

type Validatable = new (data: never) => { validate(): void };

const ajv = new Ajv({ allErrors: true, strict: true });

/** The vendored schema of a CloudNativePG kind (kustomize/schemas/), compiled once. */
function cnpgSchema(kind: "Cluster" | "Pooler") {
  const file = join(kustomizeDir, "schemas", `cnpg-${kind.toLowerCase()}.schema.json`);
  return ajv.compile(JSON.parse(readFileSync(file, "utf8")) as object);
}

/** Errors of `object` against its CloudNativePG schema, one line each; empty when it is valid. */
function cnpgErrors(object: unknown, kind: "Cluster" | "Pooler"): string[] {
  const validate = CNPG_SCHEMAS[kind];
  if (validate(object)) return [];
  return (validate.errors ?? []).map(
    (e) =>
      `${e.instancePath || "/"} ${e.message}${e.params && "additionalProperty" in e.params ? `: ${e.params.additionalProperty}` : ""}`,
  );
}

const CNPG_SCHEMAS = { Cluster: cnpgSchema("Cluster"), Pooler: cnpgSchema("Pooler") };

/** A kubernetes-models-like wrapper, so the vendored schemas sit in MODELS beside the others. */
function schemaModel(kind: "Cluster" | "Pooler"): Validatable {
  return class {
    constructor(private readonly data: never) {}
    validate(): void {
      const errors = cnpgErrors(this.data, kind);
      if (errors.length > 0) throw new Error(errors.join("; "));
    }
  };
}

/** Every apiVersion/kind a build may contain, with the model that validates it. */
const MODELS: Record<string, Validatable> = {
  "v1/Namespace": Namespace,
  "v1/Service": Service,
  "v1/Secret": Secret,
  "v1/ConfigMap": ConfigMap,
  "v1/ServiceAccount": ServiceAccount,
  "apps/v1/Deployment": Deployment,
  "apps/v1/StatefulSet": StatefulSet,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "storage.k8s.io/v1/StorageClass": StorageClass,
  "external-secrets.io/v1/ExternalSecret": ExternalSecret,
  "postgresql.cnpg.io/v1/Cluster": schemaModel("Cluster"),
  "postgresql.cnpg.io/v1/Pooler": schemaModel("Pooler"),
};

// ---------------------------------------------------------------- building

/** The files of kustomize/ a fresh clone would have: tracked, or new and not ignored. */
function cloneFiles(): string[] {
  return execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z", "kustomize"], {
    cwd: repo,
    encoding: "utf8",
  })
    .split("\0")
    .filter((f) => f && !f.endsWith(".test.ts") && existsSync(join(repo, f)));
}

/** A temp directory holding cloneFiles() only: what `git clone` gives, and nothing local. */
function freshClone(): string {
  const dir = mkdtempSync(join(tmpdir(), "querygate-kustomize-"));
  for (const file of cloneFiles()) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    copyFileSync(join(repo, file), join(dir, file));
  }
  return dir;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? walk(path) : [path];
  });
}

function kustomizeBuild(dir: string): string {
  if (!kustomize) throw new Error("kubectl is not on PATH (nor kustomize): cannot build the manifests");
  return execFileSync(kustomize.command, kustomize.args(dir), {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 64 * 1024 * 1024,
  });
}

function parseObjects(text: string, what: string): K8sObject[] {
  return parseAllDocuments(text).flatMap((doc, index) => {
    if (doc.errors.length > 0) throw new Error(`${what}, document ${index}: ${doc.errors[0]?.message}`);
    const value = doc.toJS() as K8sObject | null;
    return value ? [value] : [];
  });
}

let built: Map<BuildName, K8sObject[]> | Error | undefined;

/** Every build's objects (built once, on first use; a failure fails every test that needs them). */
function builds(): Map<BuildName, K8sObject[]> {
  built ??= buildAll();
  if (built instanceof Error) throw built;
  return built;
}

function buildAll(): Map<BuildName, K8sObject[]> | Error {
  const dir = freshClone();
  try {
    const result = new Map<BuildName, K8sObject[]>();
    for (const [name, path] of Object.entries(BUILDS) as Array<[BuildName, string]>) {
      let output: string;
      try {
        output = kustomizeBuild(join(dir, "kustomize", path));
      } catch (error) {
        const stderr = (error as { stderr?: string }).stderr ?? "";
        return new Error(`kustomize ${path} failed: ${stderr || (error as Error).message}`);
      }
      result.set(name, parseObjects(output, path));
    }
    return result;
  } catch (error) {
    return error as Error;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function objectsOf(name: BuildName): K8sObject[] {
  const objects = builds().get(name);
  if (!objects) throw new Error(`no build ${name}`);
  return objects;
}

/**
 * kustomize folds long base64 values over several lines; the API server's
 * decoder (Go's encoding/base64) skips line breaks, the schema's "byte" format
 * does not. Join them before validating.
 */
function withoutBase64LineBreaks(object: K8sObject): K8sObject {
  if (object.kind !== "Secret" && object.kind !== "ConfigMap") return object;
  const field = object.kind === "Secret" ? "data" : "binaryData";
  const values = object[field] as Record<string, string> | undefined;
  if (!values) return object;
  const joined = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.replace(/[\r\n]/g, "")]));
  return { ...object, [field]: joined };
}

// ---------------------------------------------------------------- queries

const id = (o: K8sObject) => `${o.kind}/${o.metadata.name}`;

function find(objects: K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind}/${name} in the build`);
  return found;
}

function workloads(objects: K8sObject[]): Workload[] {
  return objects
    .filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet")
    .map((o) => {
      const template = o.spec.template as IPodTemplateSpec;
      return {
        kind: o.kind as Workload["kind"],
        name: o.metadata.name,
        namespace: o.metadata.namespace ?? "default",
        spec: o.spec,
        template,
        labels: template.metadata?.labels ?? {},
        containers: template.spec?.containers ?? [],
      };
    });
}

function workload(objects: K8sObject[], name: string): Workload {
  const found = workloads(objects).find((w) => w.name === name);
  if (!found) throw new Error(`no workload ${name} in the build`);
  return found;
}

function container(w: Workload, name = w.name): IContainer {
  const found = w.containers.find((c) => c.name === name);
  if (!found) throw new Error(`no container ${name} in ${w.name}`);
  return found;
}

function envValue(c: IContainer, name: string): string | undefined {
  return c.env?.find((e) => e.name === name)?.value;
}

/** Does a label selector select these labels? An empty selector selects everything. */
function selects(selector: LabelSelector | undefined | null, labels: Labels): boolean {
  if (!selector) return true;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {}))
    if (labels[key] !== value) return false;
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const has = key in labels;
    const ok =
      operator === "In"
        ? has && values.includes(labels[key] as string)
        : operator === "NotIn"
          ? !has || !values.includes(labels[key] as string)
          : operator === "Exists"
            ? has
            : operator === "DoesNotExist"
              ? !has
              : false;
    if (!ok) return false;
  }
  return true;
}

function decodeSecret(secret: K8sObject): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]),
  );
}

/** key=value lines of a kustomize env file (comments and blank lines skipped). */
function readEnvFile(path: string): Record<string, string> {
  const entries: Array<[string, string]> = [];
  for (const line of readFileSync(path, "utf8").split(/\r?\n/)) {
    if (!line.trim() || line.trimStart().startsWith("#")) continue;
    const eq = line.indexOf("=");
    entries.push([line.slice(0, eq).trim(), line.slice(eq + 1)]);
  }
  return Object.fromEntries(entries);
}

// ---------------------------------------------------------------- network policy model

/** A party to a connection: a pod (namespace + labels), or an address outside the cluster. */
type Party = { pod: true; namespace: string; labels: Labels; what: string } | { pod: false; what: string };

// biome-ignore lint/suspicious/noExplicitAny: NetworkPolicyPeer as parsed
function peerMatches(peer: any, party: Party, policyNamespace: string): boolean {
  // ipBlocks are for addresses outside the cluster (the RDS subnets); pod traffic is judged by selectors.
  if (peer.ipBlock) return !party.pod;
  if (!party.pod) return false;
  if (peer.namespaceSelector) {
    const nsLabels = { "kubernetes.io/metadata.name": party.namespace };
    if (!selects(peer.namespaceSelector, nsLabels)) return false;
    return peer.podSelector ? selects(peer.podSelector, party.labels) : true;
  }
  return party.namespace === policyNamespace && selects(peer.podSelector, party.labels);
}

// biome-ignore lint/suspicious/noExplicitAny: NetworkPolicyPort[] as parsed
function portMatches(ports: any[] | undefined, port: number): boolean {
  if (!ports || ports.length === 0) return true;
  return ports.some(
    (p) => p.port === undefined || p.port === port || (p.endPort && p.port <= port && port <= p.endPort),
  );
}

/**
 * Do the NetworkPolicies of `subject`'s namespace let it take part in a
 * connection with `peer` on `port` (Ingress: `peer` connects to `subject`;
 * Egress: `subject` connects to `peer`)? Only this build's policies are known.
 */
function policyAllows(
  objects: K8sObject[],
  subject: Party,
  type: "Ingress" | "Egress",
  peer: Party,
  port: number,
): boolean {
  if (!subject.pod) return true; // outside the cluster: no policy applies
  const applying = objects.filter(
    (p) =>
      p.kind === "NetworkPolicy" &&
      (p.metadata.namespace ?? "default") === subject.namespace &&
      selects(p.spec.podSelector, subject.labels) &&
      ((p.spec.policyTypes as string[] | undefined) ?? ["Ingress"]).includes(type),
  );
  if (applying.length === 0) return true; // not isolated in this direction
  return applying.some((p) =>
    ((type === "Ingress" ? p.spec.ingress : p.spec.egress) ?? []).some(
      // biome-ignore lint/suspicious/noExplicitAny: NetworkPolicy rule as parsed
      (rule: any) => {
        const peers = (type === "Ingress" ? rule.from : rule.to) as unknown[] | undefined;
        const peerOk =
          !peers ||
          peers.length === 0 ||
          peers.some((x) => peerMatches(x, peer, p.metadata.namespace ?? "default"));
        return peerOk && portMatches(rule.ports, port);
      },
    ),
  );
}

/** Would the target's ingress policies alone admit `from` on `port` (whatever `from`'s egress says)? */
function ingressAllowed(objects: K8sObject[], from: Party, to: Party, port: number): boolean {
  return policyAllows(objects, to, "Ingress", from, port);
}

/** May `from` open a connection to `to` on `port`: its egress and the target's ingress both allow it? */
function connectionAllowed(objects: K8sObject[], from: Party, to: Party, port: number): boolean {
  return policyAllows(objects, from, "Egress", to, port) && ingressAllowed(objects, from, to, port);
}

function partiesOf(objects: K8sObject[]) {
  const pods = new Map<string, Party>(
    workloads(objects).map((w) => [
      w.name,
      { pod: true, namespace: w.namespace, labels: w.labels, what: w.name } satisfies Party,
    ]),
  );
  const namespace = workloads(objects)[0]?.namespace ?? "default";
  const others: Party[] = [
    { pod: true, namespace, labels: { app: "stranger" }, what: "another pod in the namespace" },
    {
      pod: true,
      namespace: "monitoring",
      labels: { app: "prometheus" },
      what: "a pod in namespace monitoring",
    },
    { pod: true, namespace: "elsewhere", labels: {}, what: "a pod in another namespace" },
    { pod: false, what: "an address outside the cluster" },
    // Pods that copy our labels in another namespace must not pass for ours.
    ...workloads(objects).map(
      (w): Party => ({
        pod: true,
        namespace: "elsewhere",
        labels: w.labels,
        what: `a pod labelled ${w.name} in another namespace`,
      }),
    ),
  ];
  const dns: Party = {
    pod: true,
    namespace: "kube-system",
    labels: { "k8s-app": "kube-dns" },
    what: "cluster DNS",
  };
  const cnpg = cnpgPods(objects, namespace);
  return { pods, others, dns, cnpg, all: [...pods.values(), ...cnpg.values(), ...others] };
}

/**
 * The pods the CloudNativePG operator creates for this build's Cluster and
 * Pooler objects, with the labels it gives them (cnpg.io/cluster,
 * cnpg.io/podRole, cnpg.io/instanceRole, cnpg.io/poolerName), keyed by the object's name; the
 * operator in namespace cnpg-system too. They are not in the build, so the
 * workload-based checks do not see them.
 */
function cnpgPods(objects: K8sObject[], namespace: string): Map<string, Party> {
  const pods = new Map<string, Party>();
  for (const o of objects) {
    if (o.kind === "Cluster")
      // The primary under the Cluster's name, a replica as `<name>-replica`: the
      // operator moves the instanceRole label (and the deprecated `role`) on failover.
      for (const role of ["primary", "replica"] as const)
        pods.set(role === "primary" ? o.metadata.name : `${o.metadata.name}-replica`, {
          pod: true,
          namespace,
          labels: {
            "cnpg.io/cluster": o.metadata.name,
            "cnpg.io/podRole": "instance",
            "cnpg.io/instanceRole": role,
            role,
          },
          what: `${o.metadata.name} ${role}`,
        });
    if (o.kind === "Pooler")
      pods.set(o.metadata.name, {
        pod: true,
        namespace,
        labels: {
          "cnpg.io/poolerName": o.metadata.name,
          "cnpg.io/podRole": "pooler",
          "cnpg.io/cluster": o.spec.cluster.name,
        },
        what: `${o.metadata.name} pooler`,
      });
  }
  if (pods.size > 0)
    pods.set("operator", {
      pod: true,
      namespace: "cnpg-system",
      labels: { "app.kubernetes.io/name": "cloudnative-pg" },
      what: "the CloudNativePG operator",
    });
  return pods;
}

const PROBE_PORTS = [22, 53, 443, 5000, 5432, 8080, 9464, 50051];

// ================================================================ tests

it("every overlay builds, and every object is valid against the Kubernetes schema", () => {
  for (const [name, objects] of builds()) {
    assert.ok(objects.length > 0, `${name}: empty build`);
    for (const object of objects) {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      assert.ok(
        Model,
        `${name}: ${object.apiVersion} ${object.kind} has no schema in this test; add it to MODELS`,
      );
      try {
        new Model(withoutBase64LineBreaks(object) as never).validate();
      } catch (error) {
        assert.unreachable(`${name}: ${id(object)} is invalid: ${(error as Error).message}`);
      }
    }
  }
});

it("every object and pod template carries the common labels", () => {
  const required = (labels: Labels | undefined, what: string) => {
    assert.ok(labels?.["app.kubernetes.io/name"], `${what}: no app.kubernetes.io/name`);
    assert.ok(labels?.["app.kubernetes.io/component"], `${what}: no app.kubernetes.io/component`);
    assert.is(labels?.["app.kubernetes.io/part-of"], "querygate", `${what}: app.kubernetes.io/part-of`);
    assert.is(labels?.["app.kubernetes.io/managed-by"], "kustomize", `${what}: app.kubernetes.io/managed-by`);
  };
  for (const [name, objects] of builds()) {
    for (const object of objects) required(object.metadata.labels, `${name}: ${id(object)}`);
    for (const w of workloads(objects)) required(w.labels, `${name}: pod template of ${w.name}`);
  }
});

it("every pod and container runs as non-root with a read-only root filesystem, no privileges and no service account token", () => {
  for (const [name, objects] of builds()) {
    for (const w of workloads(objects)) {
      const pod = w.template.spec;
      const where = `${name}: ${w.name}`;
      assert.is(pod?.automountServiceAccountToken, false, `${where}: automountServiceAccountToken`);
      assert.is(pod?.securityContext?.runAsNonRoot, true, `${where}: pod runAsNonRoot`);
      assert.is(pod?.securityContext?.seccompProfile?.type, "RuntimeDefault", `${where}: pod seccompProfile`);
      assert.ok((pod?.securityContext?.runAsUser ?? 0) > 0, `${where}: pod runAsUser must be a non-zero UID`);
      assert.not.ok(pod?.hostNetwork || pod?.hostPID || pod?.hostIPC, `${where}: shares a host namespace`);
      for (const c of [...(pod?.initContainers ?? []), ...w.containers]) {
        const sc = c.securityContext;
        const at = `${where}, container ${c.name}`;
        assert.is(sc?.runAsNonRoot, true, `${at}: runAsNonRoot`);
        assert.is(sc?.readOnlyRootFilesystem, true, `${at}: readOnlyRootFilesystem`);
        assert.is(sc?.allowPrivilegeEscalation, false, `${at}: allowPrivilegeEscalation`);
        assert.not.ok(sc?.privileged, `${at}: privileged`);
        assert.equal(sc?.capabilities?.drop, ["ALL"], `${at}: capabilities.drop`);
        assert.not.ok(sc?.capabilities?.add?.length, `${at}: adds capabilities`);
        assert.is(sc?.seccompProfile?.type, "RuntimeDefault", `${at}: seccompProfile`);
      }
    }
  }
});

it("every container has resource requests and limits, readiness and liveness probes, and a writable /tmp", () => {
  for (const [name, objects] of builds()) {
    for (const w of workloads(objects)) {
      for (const c of w.containers) {
        const at = `${name}: ${w.name}, container ${c.name}`;
        for (const kind of ["requests", "limits"] as const)
          for (const resource of ["cpu", "memory"])
            assert.ok(c.resources?.[kind]?.[resource], `${at}: no ${kind}.${resource}`);
        assert.ok(c.readinessProbe, `${at}: no readinessProbe`);
        assert.ok(c.livenessProbe, `${at}: no livenessProbe`);
        const tmp = c.volumeMounts?.find((m) => m.mountPath === "/tmp");
        assert.ok(tmp, `${at}: nothing mounted at /tmp`);
        const volume = w.template.spec?.volumes?.find((v) => v.name === tmp?.name);
        assert.ok(volume?.emptyDir, `${at}: /tmp is not an emptyDir`);
      }
    }
  }
});

it("the services use native gRPC and HTTP probes, PostgreSQL pg_isready", () => {
  for (const [name, objects] of builds()) {
    const grpc = container(workload(objects, "query-grpc"));
    assert.is(grpc.readinessProbe?.grpc?.port, 50051, `${name}: query-grpc readiness is a gRPC health check`);
    assert.ok(
      grpc.livenessProbe?.grpc?.port === 50051 || grpc.livenessProbe?.tcpSocket?.port === 50051,
      `${name}: query-grpc liveness checks port 50051`,
    );
    const bridge = container(workload(objects, "http-bridge"));
    assert.is(bridge.readinessProbe?.httpGet?.path, "/readyz", `${name}: bridge readiness`);
    assert.is(bridge.livenessProbe?.httpGet?.path, "/healthz", `${name}: bridge liveness`);
    if (!workloads(objects).some((w) => w.name === "postgres")) continue;
    const postgres = container(workload(objects, "postgres"));
    for (const probe of [postgres.readinessProbe, postgres.livenessProbe, postgres.startupProbe])
      assert.match(probe?.exec?.command?.join(" ") ?? "", /\bpg_isready\b/, `${name}: postgres probe`);
  }
});

it("each service starts node with the flags the bench measures it with, before its script", () => {
  const flags = { "query-grpc": QUERY_GRPC_NODE_FLAGS, "http-bridge": HTTP_BRIDGE_NODE_FLAGS };
  for (const [name, objects] of builds())
    for (const [service, nodeFlags] of Object.entries(flags)) {
      const main = container(workload(objects, service));
      assert.equal(
        main.args,
        [...nodeFlags, `dist/services/${service}/src/main.js`],
        `${name}: ${service}'s container args are its node-flags.ts's flags, then the script`,
      );
      assert.is(main.command, undefined, `${name}: ${service} keeps the image's ENTRYPOINT (node)`);
    }
});

it("every pod pauses before stopping and has time to drain", () => {
  for (const [name, objects] of builds()) {
    for (const w of workloads(objects)) {
      const grace = w.template.spec?.terminationGracePeriodSeconds;
      assert.ok(typeof grace === "number", `${name}: ${w.name} has no terminationGracePeriodSeconds`);
      for (const c of w.containers) {
        const at = `${name}: ${w.name}, container ${c.name}`;
        const pause = c.lifecycle?.preStop?.sleep?.seconds;
        assert.ok(
          pause !== undefined && pause >= 5,
          `${at}: preStop must sleep at least 5 s (native sleep action)`,
        );
        assert.not.ok(
          c.lifecycle?.preStop?.exec,
          `${at}: preStop exec needs a shell the image does not have`,
        );
        const drainMs = Number(envValue(c, "SHUTDOWN_GRACE_MS") ?? 0);
        assert.ok(
          (grace as number) > pause + drainMs / 1000,
          `${at}: terminationGracePeriodSeconds ${grace} must exceed preStop ${pause} s + SHUTDOWN_GRACE_MS ${drainMs} ms`,
        );
      }
    }
    if (workloads(objects).some((w) => w.name === "postgres")) {
      const grace = workload(objects, "postgres").template.spec?.terminationGracePeriodSeconds ?? 0;
      assert.ok(grace >= 60 && grace <= 120, `${name}: postgres terminationGracePeriodSeconds ${grace}`);
    }
  }
});

it("every workload has exactly one PodDisruptionBudget", () => {
  for (const [name, objects] of builds()) {
    const pdbs = objects.filter((o) => o.kind === "PodDisruptionBudget");
    for (const w of workloads(objects)) {
      const mine = pdbs.filter((p) => selects(p.spec.selector, w.labels));
      assert.is(mine.length, 1, `${name}: ${w.name} is selected by ${mine.length} PodDisruptionBudgets`);
    }
    for (const pdb of pdbs) {
      const selected = workloads(objects).filter((w) => selects(pdb.spec.selector, w.labels));
      assert.is(selected.length, 1, `${name}: ${id(pdb)} selects ${selected.length} workloads`);
    }
  }
});

it("every Service selects one workload and targets a port it declares", () => {
  for (const [name, objects] of builds()) {
    for (const service of objects.filter((o) => o.kind === "Service")) {
      const selected = workloads(objects).filter((w) =>
        selects({ matchLabels: service.spec.selector }, w.labels),
      );
      assert.is(selected.length, 1, `${name}: ${id(service)} selects ${selected.length} workloads`);
      const ports = (selected[0] as Workload).containers.flatMap((c) => c.ports ?? []);
      for (const port of service.spec.ports as Array<{ port: number; targetPort?: string | number }>) {
        const target = port.targetPort ?? port.port;
        assert.ok(
          ports.some((p) => p.name === target || p.containerPort === target),
          `${name}: ${id(service)} targets port ${target}, which ${selected[0]?.name} does not declare`,
        );
      }
    }
  }
});

it("every Secret and ConfigMap a pod uses is in the build or made by an ExternalSecret in it, except the documented RDS CA bundle", () => {
  for (const [name, objects] of builds()) {
    const secrets = new Map(objects.filter((o) => o.kind === "Secret").map((o) => [o.metadata.name, o]));
    for (const external of objects.filter((o) => o.kind === "ExternalSecret"))
      secrets.set(external.spec.target.name, {
        ...external,
        data: Object.fromEntries(
          (external.spec.data as Array<{ secretKey: string }>).map((d) => [d.secretKey, ""]),
        ),
      });
    const configMaps = new Set(objects.filter((o) => o.kind === "ConfigMap").map((o) => o.metadata.name));
    for (const w of workloads(objects)) {
      for (const c of w.containers) {
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref) {
            const secret = secrets.get(ref.name ?? "");
            assert.ok(secret, `${name}: ${w.name} env ${e.name} uses missing Secret ${ref.name}`);
            assert.ok(ref.key in (secret?.data ?? {}), `${name}: ${w.name} env ${e.name}: no key ${ref.key}`);
          }
          const cm = e.valueFrom?.configMapKeyRef;
          if (cm)
            assert.ok(configMaps.has(cm.name ?? ""), `${name}: ${w.name} uses missing ConfigMap ${cm.name}`);
        }
        for (const from of c.envFrom ?? []) {
          if (from.secretRef) assert.ok(secrets.has(from.secretRef.name ?? ""), `${name}: ${w.name} envFrom`);
          if (from.configMapRef)
            assert.ok(configMaps.has(from.configMapRef.name ?? ""), `${name}: ${w.name} envFrom`);
        }
      }
      for (const v of w.template.spec?.volumes ?? []) {
        if (v.secret)
          assert.ok(secrets.has(v.secret.secretName ?? ""), `${name}: ${w.name} volume ${v.name}`);
        if (v.configMap) {
          const cm = v.configMap.name ?? "";
          assert.ok(
            configMaps.has(cm) || (name === "aws-rds" && EXTERNAL_CONFIGMAPS.has(cm)),
            `${name}: ${w.name} volume ${v.name} uses ConfigMap ${cm}, which is not in the build`,
          );
        }
      }
    }
  }
});

it("the bridge reaches query-grpc through the headless service, over every pod", () => {
  for (const [name, objects] of builds()) {
    const bridge = container(workload(objects, "http-bridge"));
    assert.is(envValue(bridge, "QUERY_GRPC_TARGET"), "dns:///query-grpc-headless:50051", `${name}: target`);
    assert.is(envValue(bridge, "HOST"), "0.0.0.0", `${name}: bridge HOST`);
    assert.is(envValue(bridge, "UPSTREAM_AUTH"), "true", `${name}: bridge UPSTREAM_AUTH`);
    const headless = find(objects, "Service", "query-grpc-headless");
    assert.is(headless.spec.clusterIP, "None", `${name}: query-grpc-headless must be headless`);
    assert.ok(
      selects({ matchLabels: headless.spec.selector }, workload(objects, "query-grpc").labels),
      `${name}: query-grpc-headless selects query-grpc`,
    );
    assert.ok(
      (headless.spec.ports as Array<{ port: number }>).some((p) => p.port === 50051),
      `${name}: query-grpc-headless serves 50051`,
    );
    const grpc = container(workload(objects, "query-grpc"));
    assert.is(envValue(grpc, "GRPC_HOST"), "0.0.0.0", `${name}: query-grpc GRPC_HOST`);
    assert.ok(
      grpc.ports?.some((p) => p.name === "metrics" && p.containerPort === 9464),
      `${name}: query-grpc names its metrics port`,
    );
    const url = grpc.env?.find((e) => e.name === "DATABASE_URL");
    assert.ok(
      url?.valueFrom?.secretKeyRef?.key === "DATABASE_URL" ||
        /^postgres:\/\/\$\(DATABASE_USER\):\$\(DATABASE_PASSWORD\)@/.test(url?.value ?? ""),
      `${name}: DATABASE_URL comes from a Secret, or is built from one's username and password`,
    );
  }
});

it("a default-deny NetworkPolicy isolates every pod, and DNS stays reachable", () => {
  for (const [name, objects] of builds()) {
    const denyAll = objects.filter(
      (o) =>
        o.kind === "NetworkPolicy" &&
        Object.keys(o.spec.podSelector ?? {}).length === 0 &&
        o.spec.policyTypes?.includes("Ingress") &&
        o.spec.policyTypes?.includes("Egress") &&
        !o.spec.ingress?.length &&
        !o.spec.egress?.length,
    );
    assert.is(denyAll.length, 1, `${name}: one default-deny-all NetworkPolicy`);
    const { pods, others, dns } = partiesOf(objects);
    const elsewhere = others[2] as Party;
    for (const pod of pods.values()) {
      assert.not.ok(connectionAllowed(objects, elsewhere, pod, 22), `${name}: ${pod.what} accepts anything`);
      assert.not.ok(connectionAllowed(objects, pod, elsewhere, 22), `${name}: ${pod.what} connects anywhere`);
      if (pod.what !== "postgres")
        assert.ok(connectionAllowed(objects, pod, dns, 53), `${name}: ${pod.what} cannot reach DNS`);
    }
  }
});

// The next three judge each target's ingress policies on their own, as if every
// source's egress were open: the target protects itself.
it("only query-grpc can reach PostgreSQL, and only on port 5432", () => {
  for (const name of ["base", "minikube"] as const) {
    const objects = objectsOf(name);
    const { pods, all } = partiesOf(objects);
    const postgres = pods.get("postgres") as Party;
    for (const from of all)
      for (const port of PROBE_PORTS) {
        const expected = from.what === "query-grpc" && port === 5432;
        assert.is(
          ingressAllowed(objects, from, postgres, port),
          expected,
          `${name}: ${from.what} -> postgres:${port} should be ${expected ? "allowed" : "denied"}`,
        );
      }
  }
});

it("only the bridge can reach query-grpc on gRPC, and metrics only from the monitoring namespace", () => {
  for (const [name, objects] of builds()) {
    const { pods, all } = partiesOf(objects);
    const grpc = pods.get("query-grpc") as Party;
    for (const from of all)
      for (const port of PROBE_PORTS) {
        const expected =
          (from.what === "http-bridge" && port === 50051) ||
          (from.what === "a pod in namespace monitoring" && port === 9464);
        assert.is(
          ingressAllowed(objects, from, grpc, port),
          expected,
          `${name}: ${from.what} -> query-grpc:${port} should be ${expected ? "allowed" : "denied"}`,
        );
      }
  }
});

it("the bridge accepts connections from anywhere, on port 5000 only", () => {
  for (const [name, objects] of builds()) {
    const { pods, others } = partiesOf(objects);
    const bridge = pods.get("http-bridge") as Party;
    for (const from of others)
      for (const port of PROBE_PORTS)
        assert.is(
          ingressAllowed(objects, from, bridge, port),
          port === 5000,
          `${name}: ${from.what} -> http-bridge:${port}`,
        );
  }
});

it("pods open connections only to their next hop and to DNS", () => {
  for (const [name, objects] of builds()) {
    const { pods, others, dns, cnpg } = partiesOf(objects);
    const outside = others[3] as Party;
    const targets = [...pods.values(), ...cnpg.values(), ...others];
    const allowedFrom = (from: string) =>
      targets.flatMap((to) =>
        PROBE_PORTS.filter((port) => connectionAllowed(objects, pods.get(from) as Party, to, port)).map(
          (port) => `${to.what}:${port}`,
        ),
      );
    assert.equal(allowedFrom("http-bridge"), ["query-grpc:50051"], `${name}: bridge egress`);
    assert.equal(
      allowedFrom("query-grpc"),
      name === "aws-rds"
        ? ["an address outside the cluster:5432"]
        : name === "aws"
          ? ["querygate-db replica:5432", "querygate-db-pooler-rw pooler:5432"]
          : ["postgres:5432"],
      `${name}: query-grpc egress`,
    );
    if (pods.has("postgres")) assert.equal(allowedFrom("postgres"), [], `${name}: postgres egress`);
    for (const pod of pods.values())
      assert.not.ok(
        connectionAllowed(objects, pod, outside, 443),
        `${name}: ${pod.what} reaches the internet`,
      );
    assert.not.ok(
      connectionAllowed(objects, pods.get("http-bridge") as Party, dns, 5432),
      `${name}: dns port`,
    );
  }
});

it("minikube exposes the bridge on NodePort 31234 with one replica of each service and the local image", () => {
  const objects = objectsOf("minikube");
  const service = find(objects, "Service", "http-bridge");
  assert.is(service.spec.type, "NodePort");
  assert.equal(
    (service.spec.ports as Array<{ port: number; nodePort?: number }>).map((p) => [p.port, p.nodePort]),
    [[5000, 31234]],
  );
  for (const w of workloads(objects)) {
    assert.is(w.spec.replicas, 1, `${w.name} replicas`);
    for (const c of w.containers) {
      if (w.name === "postgres") continue;
      assert.is(c.image, "querygate:dev", `${w.name} image`);
      assert.is(c.imagePullPolicy, "Never", `${w.name} imagePullPolicy`);
    }
  }
  assert.is(find(objects, "Namespace", "querygate").metadata.name, "querygate");
});

it("namespaced overlays enforce the restricted Pod Security Standard in namespace querygate", () => {
  for (const name of OVERLAYS) {
    const objects = objectsOf(name);
    const ns = find(objects, "Namespace", "querygate");
    assert.is(ns.metadata.labels?.["pod-security.kubernetes.io/enforce"], "restricted", `${name}: PSS`);
    for (const o of objects) {
      if (o.kind === "Namespace" || o.kind === "StorageClass") continue;
      assert.is(o.metadata.namespace, "querygate", `${name}: ${id(o)} namespace`);
    }
  }
  for (const o of objectsOf("base"))
    assert.is(o.metadata.namespace, undefined, `base: ${id(o)} is namespaced`);
});

it("aws runs two replicas rolled with maxUnavailable 50% and maxSurge 1, each with a HorizontalPodAutoscaler", () => {
  for (const name of AWS_BUILDS) {
    const objects = objectsOf(name);
    for (const service of ["query-grpc", "http-bridge"]) {
      const w = workload(objects, service);
      assert.is(w.spec.replicas, 2, `${name}: ${service} replicas`);
      assert.is(w.spec.strategy?.type, "RollingUpdate", `${name}: ${service} strategy`);
      assert.is(w.spec.strategy?.rollingUpdate?.maxUnavailable, "50%", `${name}: ${service} maxUnavailable`);
      assert.is(w.spec.strategy?.rollingUpdate?.maxSurge, 1, `${name}: ${service} maxSurge`);
      const hpa = objects.find(
        (o) =>
          o.kind === "HorizontalPodAutoscaler" &&
          o.spec.scaleTargetRef?.kind === "Deployment" &&
          o.spec.scaleTargetRef?.name === service,
      );
      assert.ok(hpa, `${name}: no HorizontalPodAutoscaler for ${service}`);
      assert.is(hpa?.apiVersion, "autoscaling/v2");
      assert.ok(hpa?.spec.minReplicas >= 2, `${name}: ${service} HPA minReplicas`);
      assert.ok(hpa?.spec.maxReplicas > hpa?.spec.minReplicas, `${name}: ${service} HPA range`);
    }
  }
});

it("aws puts the bridge behind an NLB, spreads pods across zones and pulls images from ECR", () => {
  for (const name of AWS_BUILDS) {
    const objects = objectsOf(name);
    const service = find(objects, "Service", "http-bridge");
    assert.is(service.spec.type, "LoadBalancer", `${name}: bridge Service type`);
    const annotations = service.metadata.annotations ?? {};
    assert.is(annotations["service.beta.kubernetes.io/aws-load-balancer-type"], "external");
    assert.is(annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"], "ip");
    assert.is(annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"], "/readyz");
    for (const service of ["query-grpc", "http-bridge"]) {
      const w = workload(objects, service);
      const zone = w.template.spec?.topologySpreadConstraints?.find(
        (c) => c.topologyKey === "topology.kubernetes.io/zone",
      );
      assert.ok(zone, `${name}: ${service} has no zone topologySpreadConstraint`);
      assert.ok(
        selects(zone?.labelSelector as LabelSelector, w.labels),
        `${name}: ${service} spread selector`,
      );
      assert.match(
        container(w).image ?? "",
        /^ACCOUNT\.dkr\.ecr\.REGION\.amazonaws\.com\/querygate:TAG$/,
        `${name}: ${service} image`,
      );
    }
  }
});

it("aws stores PostgreSQL on its encrypted gp3 StorageClass", () => {
  const objects = objectsOf("aws");
  const className = find(objects, "Cluster", "querygate-db").spec.storage?.storageClass;
  assert.ok(className, "Cluster querygate-db has no storage.storageClass");
  const storageClass = find(objects, "StorageClass", className);
  assert.is(storageClass.provisioner, "ebs.csi.aws.com");
  assert.is((storageClass.parameters as Labels).type, "gp3");
  assert.is((storageClass.parameters as Labels).encrypted, "true");
  assert.is(storageClass.volumeBindingMode, "WaitForFirstConsumer");
});

it("aws-rds drops the in-cluster PostgreSQL and connects to RDS over verified TLS", () => {
  const objects = objectsOf("aws-rds");
  for (const o of objects)
    assert.not.ok(
      o.metadata.name === "postgres" || o.metadata.name === "postgres-ingress" || o.kind === "StatefulSet",
      `aws-rds still has ${id(o)}`,
    );
  assert.not.ok(
    objects.some((o) => o.kind === "StorageClass"),
    "aws-rds keeps a StorageClass nothing uses",
  );
  const grpc = workload(objects, "query-grpc");
  const c = container(grpc);
  assert.is(envValue(c, "PGSSLMODE"), "verify-full");
  const caPath = envValue(c, "NODE_EXTRA_CA_CERTS") ?? "";
  const mount = c.volumeMounts?.find((m) => caPath.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `NODE_EXTRA_CA_CERTS ${caPath} is not on a mounted volume`);
  const volume = grpc.template.spec?.volumes?.find((v) => v.name === mount?.name);
  assert.is(volume?.configMap?.name, "rds-ca-bundle");
  const egress = find(objects, "NetworkPolicy", "query-grpc-egress");
  assert.ok(egress.spec.egress?.[0]?.to?.[0]?.ipBlock?.cidr, "query-grpc egress is to an ipBlock");
  // The comment the user follows shows the RDS form of DATABASE_URL with verified TLS.
  const overlay = readFileSync(join(kustomizeDir, "overlays/aws-rds/kustomization.yaml"), "utf8");
  assert.match(overlay, /postgres:\/\/\S+\.rds\.amazonaws\.com:5432\/\S+\?sslmode=verify-full/);
  const external = find(objects, "ExternalSecret", "querygate-database");
  assert.is(external.spec.target.name, "querygate-database", "DATABASE_URL comes from Secrets Manager");
});

/** Each Secret an ExternalSecret makes, by name, with its keys. */
function externalSecrets(objects: K8sObject[]): Map<string, string[]> {
  return new Map(
    objects
      .filter((o) => o.kind === "ExternalSecret")
      .map((o) => [
        o.spec.target.name as string,
        (o.spec.data as Array<{ secretKey: string }>).map((d) => d.secretKey),
      ]),
  );
}

it("the aws overlay builds on a fresh clone with no local files", () => {
  const files = cloneFiles();
  assert.ok(files.includes("kustomize/overlays/aws/kustomization.yaml"), "the clone holds the aws overlay");
  for (const file of files) {
    const ignored = spawnSync("git", ["check-ignore", "-q", "--no-index", file], { cwd: repo });
    assert.is.not(ignored.status, 0, `${file} is gitignored, so a fresh clone does not have it`);
  }
  const dir = freshClone();
  try {
    for (const name of AWS_BUILDS) {
      let failure = "";
      try {
        kustomizeBuild(join(dir, "kustomize", BUILDS[name]));
      } catch (error) {
        failure = String((error as { stderr?: string }).stderr ?? error);
      }
      assert.is(failure, "", `${name} does not build from a fresh clone`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it("no committed secret value reaches an aws build", () => {
  // Sources: no Secret manifests, no literals, generators only for the base's documented dev defaults.
  for (const file of walk(kustomizeDir).filter((f) => /\.ya?ml$/.test(f))) {
    const where = relative(repo, file);
    for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
      const value = doc.toJS() as Record<string, unknown> | null;
      if (!value) continue;
      assert.is.not(value.kind, "Secret", `${where}: write no Secret in YAML`);
      const generators = (value.secretGenerator ?? []) as Array<Record<string, string[] | undefined>>;
      for (const generator of generators) {
        assert.not.ok(generator.literals?.length, `${where}: secretGenerator literals`);
        assert.is(where, join("kustomize", "base", "kustomization.yaml"), `${where}: a secretGenerator`);
        for (const source of [...(generator.envs ?? []), ...(generator.files ?? [])]) {
          const path = source.includes("=") ? source.slice(source.indexOf("=") + 1) : source;
          assert.ok(path.startsWith("dev-defaults/"), `${where}: ${path} is not a documented dev default`);
        }
      }
    }
  }

  const devDatabase = readEnvFile(join(kustomizeDir, "base/dev-defaults/database.env"));
  const devKeys = readFileSync(join(kustomizeDir, "base/dev-defaults/api-keys.json"), "utf8");
  const devPassword = devDatabase.POSTGRES_PASSWORD as string;
  const devHash = (JSON.parse(devKeys) as Array<{ sha256: string }>)[0]?.sha256 as string;

  for (const name of ["base", "minikube"] as const) {
    const secrets = objectsOf(name).filter((o) => o.kind === "Secret");
    const database = decodeSecret(
      secrets.find((s) => s.metadata.name.startsWith("querygate-database-")) as K8sObject,
    );
    const auth = decodeSecret(
      secrets.find((s) => s.metadata.name.startsWith("querygate-auth-")) as K8sObject,
    );
    assert.equal(database, devDatabase, `${name}: the documented dev database credentials`);
    assert.is(auth["api-keys.json"], devKeys, `${name}: the documented dev API key`);
  }

  const expected = {
    aws: { "querygate-auth": ["api-keys.json"], "querygate-db-authenticator": ["username", "password"] },
    "aws-rds": { "querygate-auth": ["api-keys.json"], "querygate-database": ["DATABASE_URL"] },
  };
  for (const name of AWS_BUILDS) {
    const objects = objectsOf(name);
    assert.equal(
      objects.filter((o) => o.kind === "Secret").map(id),
      [],
      `${name}: a Secret with values reaches the build`,
    );
    assert.equal(Object.fromEntries(externalSecrets(objects)), expected[name], `${name}: ExternalSecrets`);
    for (const external of objects.filter((o) => o.kind === "ExternalSecret")) {
      assert.is(external.spec.secretStoreRef.kind, "ClusterSecretStore", `${name}: ${id(external)} store`);
      assert.is(external.spec.secretStoreRef.name, "aws-secrets-manager", `${name}: ${id(external)} store`);
    }
    const everything = JSON.stringify(objects);
    for (const leak of [
      devPassword,
      devHash,
      Buffer.from(devPassword).toString("base64"),
      "querygate-dev-token",
    ])
      assert.not.ok(everything.includes(leak), `${name}: a dev default (${leak.slice(0, 6)}...) leaked`);
  }
});

it("a pod whose Secret is missing stays unready: no secretKeyRef or Secret volume is optional", () => {
  for (const [name, objects] of builds())
    for (const w of workloads(objects))
      for (const c of w.containers) {
        for (const e of c.env ?? [])
          assert.not.ok(e.valueFrom?.secretKeyRef?.optional, `${name}: ${w.name} env ${e.name} is optional`);
        for (const v of w.template.spec?.volumes ?? [])
          assert.not.ok(v.secret?.optional, `${name}: ${w.name} volume ${v.name} is optional`);
      }
});

// ---------------------------------------------------------------- CloudNativePG

const cnpgObjects = () => objectsOf("aws").filter((o) => o.apiVersion === "postgresql.cnpg.io/v1");

it("every CloudNativePG object matches the vendored schema", () => {
  const objects = cnpgObjects();
  assert.equal(objects.map(id).sort(), ["Cluster/querygate-db", "Pooler/querygate-db-pooler-rw"]);
  for (const object of objects)
    assert.equal(cnpgErrors(object, object.kind as "Cluster" | "Pooler"), [], `${id(object)} is invalid`);
});

it("the vendored CloudNativePG schemas refuse unknown and misspelt fields at every level", () => {
  const cluster = find(cnpgObjects(), "Cluster", "querygate-db");
  const pooler = find(cnpgObjects(), "Pooler", "querygate-db-pooler-rw");
  const withField = (object: K8sObject, path: string[], field: string): K8sObject => {
    const copy = structuredClone(object);
    // biome-ignore lint/suspicious/noExplicitAny: walking a parsed object
    let at: any = copy;
    for (const step of path) at = at[step];
    at[field] = true;
    return copy;
  };
  const cases: Array<[K8sObject, string[], string]> = [
    [cluster, [], "status"],
    [cluster, ["spec"], "instance"],
    [cluster, ["spec", "storage"], "storageClassName"],
    [cluster, ["spec", "affinity"], "topologySpreadConstraints"],
    [cluster, ["spec", "bootstrap", "initdb"], "password"],
    [cluster, ["spec", "postgresql"], "max_connections"],
    [cluster, ["spec", "postgresql", "synchronous"], "replicas"],
    [cluster, ["spec", "managed", "roles", "0"], "noinherit"],
    [cluster, ["spec", "managed", "roles", "0", "passwordSecret"], "key"],
    [pooler, ["spec"], "poolMode"],
    [pooler, ["spec", "pgbouncer"], "pool_mode"],
    [pooler, ["spec", "cluster"], "namespace"],
  ];
  for (const [object, path, field] of cases) {
    const errors = cnpgErrors(withField(object, path, field), object.kind as "Cluster" | "Pooler");
    assert.ok(
      errors.some((e) => e.includes(field)),
      `${id(object)}: ${[...path, field].join(".")} was accepted (${errors.join("; ") || "no error"})`,
    );
  }
  // Values are checked too, not only names.
  const wrongMode = structuredClone(pooler);
  wrongMode.spec.pgbouncer.poolMode = "statement";
  assert.ok(cnpgErrors(wrongMode, "Pooler").length > 0, "poolMode statement was accepted");
});

it("aws runs three CloudNativePG instances spread over zones, with the README's roles", () => {
  const objects = objectsOf("aws");
  assert.not.ok(
    objects.some((o) => o.kind === "StatefulSet" || o.metadata.name.startsWith("postgres")),
    "the in-cluster StatefulSet is still in the aws build",
  );
  const cluster = find(objects, "Cluster", "querygate-db").spec;
  assert.is(cluster.instances, 3);
  assert.is(cluster.affinity.topologyKey, "topology.kubernetes.io/zone");
  assert.is(cluster.affinity.enablePodAntiAffinity, true);
  assert.ok(cluster.storage.size, "storage size");
  assert.equal(cluster.bootstrap.initdb, { database: "querygate", owner: "querygate" });
  assert.ok(cluster.postgresql.parameters.max_connections, "postgresql.parameters");
  const roles = Object.fromEntries(
    (cluster.managed.roles as Array<Record<string, unknown>>).map((r) => [r.name, r]),
  );
  assert.equal(Object.keys(roles).sort(), ["authenticator", "ingest", "reporting"]);
  assert.is(roles.authenticator?.login, true, "authenticator logs in");
  assert.is(roles.authenticator?.inherit, false, "authenticator is NOINHERIT");
  assert.equal(
    roles.authenticator?.inRoles,
    ["reporting", "ingest"],
    "authenticator may switch to the callers",
  );
  for (const caller of ["reporting", "ingest"])
    assert.is(roles[caller]?.login, false, `${caller} is NOLOGIN`);
  assert.ok(
    readFileSync(join(repo, "README.md"), "utf8").includes(
      "create role authenticator login password 'change-me' noinherit;",
    ),
    "the README's worked example these roles follow",
  );
  // The minikube overlay stays light: the single StatefulSet, no operator needed.
  assert.not.ok(
    objectsOf("minikube").some((o) => o.apiVersion === "postgresql.cnpg.io/v1"),
    "minikube",
  );
  assert.ok(workload(objectsOf("minikube"), "postgres"), "minikube keeps its StatefulSet");
});

it("query-grpc in the aws overlay reaches the database through the PgBouncer pooler", () => {
  const objects = objectsOf("aws");
  const cluster = find(objects, "Cluster", "querygate-db");
  const pooler = find(objects, "Pooler", "querygate-db-pooler-rw");
  assert.is(pooler.spec.cluster.name, cluster.metadata.name);
  assert.is(pooler.spec.type, "rw");
  assert.is(pooler.spec.pgbouncer.poolMode, "transaction");
  assert.is(pooler.spec.instances, 2);

  const grpc = container(workload(objects, "query-grpc"));
  const env = grpc.env ?? [];
  const url = new URL(envValue(grpc, "DATABASE_URL") ?? "");
  assert.is(
    url.hostname,
    `${pooler.metadata.name}.${pooler.metadata.namespace}.svc`,
    "host is the pooler's Service",
  );
  assert.is(url.port, "5432");
  assert.is(url.pathname, `/${cluster.spec.bootstrap.initdb.database}`);
  assert.is(url.username, "$(DATABASE_USER)");
  assert.is(url.password, "$(DATABASE_PASSWORD)");
  const authenticator = (
    cluster.spec.managed.roles as Array<{ name: string; passwordSecret?: { name: string } }>
  ).find((r) => r.name === "authenticator");
  const position = (n: string) => env.findIndex((e) => e.name === n);
  for (const [variable, key] of [
    ["DATABASE_USER", "username"],
    ["DATABASE_PASSWORD", "password"],
  ] as const) {
    const ref = env.find((e) => e.name === variable)?.valueFrom?.secretKeyRef;
    assert.is(ref?.name, authenticator?.passwordSecret?.name, `${variable} from the managed role's Secret`);
    assert.is(ref?.key, key, `${variable} key`);
    assert.ok(
      position(variable) < position("DATABASE_URL"),
      `${variable} is defined before DATABASE_URL uses it`,
    );
  }

  const { pods, cnpg, others } = partiesOf(objects);
  const queryGrpc = pods.get("query-grpc") as Party;
  const poolerPod = cnpg.get(pooler.metadata.name) as Party;
  const instance = cnpg.get(cluster.metadata.name) as Party;
  const replica = cnpg.get(`${cluster.metadata.name}-replica`) as Party;
  const operator = cnpg.get("operator") as Party;
  assert.ok(connectionAllowed(objects, queryGrpc, poolerPod, 5432), "query-grpc -> pooler:5432");
  assert.not.ok(connectionAllowed(objects, queryGrpc, instance, 5432), "query-grpc bypasses the pooler");
  assert.ok(connectionAllowed(objects, poolerPod, instance, 5432), "pooler -> instances:5432");
  for (const [a, b] of [
    [instance, replica],
    [replica, instance],
  ] as const)
    assert.ok(connectionAllowed(objects, a, b, 5432), `replication ${a.what} -> ${b.what}`);
  for (const target of [instance, replica])
    assert.ok(
      ingressAllowed(objects, operator, target, 8000),
      `the operator reaches ${target.what}'s manager`,
    );
  for (const from of [...others, pods.get("http-bridge") as Party]) {
    assert.not.ok(ingressAllowed(objects, from, poolerPod, 5432), `${from.what} -> pooler:5432`);
    for (const target of [instance, replica])
      assert.not.ok(ingressAllowed(objects, from, target, 5432), `${from.what} -> ${target.what}:5432`);
  }
});

it("query-grpc in the aws overlay sends reads to the CloudNativePG replicas through querygate-db-ro, as the authenticator", () => {
  const objects = objectsOf("aws");
  const cluster = find(objects, "Cluster", "querygate-db");
  assert.ok(cluster.spec.instances >= 2, "the Cluster has replicas to read from");
  const grpc = container(workload(objects, "query-grpc"));
  const env = grpc.env ?? [];
  const read = env.find((e) => e.name === "DATABASE_READ_URL");
  assert.ok(read, "query-grpc has DATABASE_READ_URL");
  assert.is(read.valueFrom, undefined, "DATABASE_READ_URL is assembled, not a Secret value of its own");
  const readUrl = new URL(read.value ?? "");
  const writeUrl = new URL(envValue(grpc, "DATABASE_URL") ?? "");
  assert.is(readUrl.protocol, "postgres:");
  // The operator's read-only Service: it selects cnpg.io/instanceRole=replica and follows failovers.
  assert.is(
    readUrl.hostname,
    `${cluster.metadata.name}-ro.${cluster.metadata.namespace}.svc`,
    "host is the Cluster's -ro Service",
  );
  assert.is(readUrl.port, "5432");
  assert.is(readUrl.pathname, writeUrl.pathname, "the same database as DATABASE_URL");
  assert.is(readUrl.search, writeUrl.search, "the same connection options as DATABASE_URL");
  // Reads switch to the caller's role (SET LOCAL ROLE) like writes, so they log in as the
  // role that may: the authenticator, from the Secret DATABASE_URL uses. No password in YAML.
  assert.is(readUrl.username, "$(DATABASE_USER)");
  assert.is(readUrl.password, "$(DATABASE_PASSWORD)");
  const position = (n: string) => env.findIndex((e) => e.name === n);
  for (const variable of ["DATABASE_USER", "DATABASE_PASSWORD"])
    assert.ok(
      position(variable) >= 0 && position(variable) < position("DATABASE_READ_URL"),
      `${variable} is defined before DATABASE_READ_URL uses it`,
    );

  // Straight to the replicas on 5432, never to the primary, which only the pooler reaches.
  const { pods, cnpg, others } = partiesOf(objects);
  const queryGrpc = pods.get("query-grpc") as Party;
  const primary = cnpg.get(cluster.metadata.name) as Party;
  const replica = cnpg.get(`${cluster.metadata.name}-replica`) as Party;
  assert.ok(connectionAllowed(objects, queryGrpc, replica, 5432), "query-grpc -> replicas:5432");
  assert.not.ok(connectionAllowed(objects, queryGrpc, primary, 5432), "query-grpc -> primary:5432");
  for (const port of PROBE_PORTS.filter((p) => p !== 5432))
    assert.not.ok(connectionAllowed(objects, queryGrpc, replica, port), `query-grpc -> replicas:${port}`);
  // The replicas' own ingress admits query-grpc only, not pods that copy its labels elsewhere.
  assert.ok(ingressAllowed(objects, queryGrpc, replica, 5432), "replica ingress admits query-grpc");
  assert.not.ok(ingressAllowed(objects, queryGrpc, primary, 5432), "primary ingress admits query-grpc");
  for (const from of others)
    assert.not.ok(ingressAllowed(objects, from, replica, 5432), `${from.what} -> replicas:5432`);

  // Without replicas to read from, every read goes to DATABASE_URL.
  for (const name of ["base", "minikube", "aws-rds"] as const)
    assert.not.ok(
      container(workload(objectsOf(name), "query-grpc")).env?.some((e) => e.name === "DATABASE_READ_URL"),
      `${name}: DATABASE_READ_URL is set with no replica to read from`,
    );
});

it("the dev API key in the base is the SHA-256 of the documented dev token", async () => {
  const { createHash } = await import("node:crypto");
  const keys = parseYaml(
    readFileSync(join(kustomizeDir, "base/dev-defaults/api-keys.json"), "utf8"),
  ) as Array<{
    sha256: string;
  }>;
  const token = "querygate-dev-token";
  assert.is(keys[0]?.sha256, createHash("sha256").update(token).digest("hex"));
  for (const doc of ["docs/kubernetes.md", "kustomize/base/dev-defaults/README.md"])
    assert.ok(readFileSync(join(repo, doc), "utf8").includes(token), `${doc} names the dev token`);
});

t.run();
