// Server reflection as grpcurl and buf curl use it: list the services, fetch
// the file declaring QueryService, then every import by name, and build a
// registry in which every method's input and output message resolves.
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { type ClientDuplexStream, credentials, makeGenericClientConstructor, status } from "@grpc/grpc-js";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  ServerReflectionClient as ReflectionV1Client,
  type ServerReflectionClient,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
  ServerReflectionService,
} from "../../../../proto/gen/grpc/reflection/v1/reflection.js";
import { atEnd, startGrpc } from "../../../../test/helpers.js";

const t = suite("gRPC server reflection");
let target: string;

/** The older v1alpha service: the same messages under another path, which older grpcurl builds call. */
const ReflectionV1AlphaClient = makeGenericClientConstructor(
  {
    serverReflectionInfo: {
      ...ServerReflectionService.serverReflectionInfo,
      path: "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    },
  },
  "grpc.reflection.v1alpha.ServerReflection",
) as unknown as typeof ReflectionV1Client;

/** One reflection stream; ask() sends a request and resolves with its response (answers come in order). */
class ReflectionSession {
  private readonly stream: ClientDuplexStream<ServerReflectionRequest, ServerReflectionResponse>;
  private readonly waiting: Array<{
    resolve: (r: ServerReflectionResponse) => void;
    reject: (e: Error) => void;
  }> = [];

  constructor(client: ServerReflectionClient) {
    this.stream = client.serverReflectionInfo();
    this.stream.on("data", (response: ServerReflectionResponse) => this.waiting.shift()?.resolve(response));
    this.stream.on("error", (error: Error) => {
      for (const w of this.waiting.splice(0)) w.reject(error);
    });
  }

  ask(request: Partial<ServerReflectionRequest>): Promise<ServerReflectionResponse> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.stream.write({ host: "", ...request });
    });
  }

  end(): void {
    this.stream.end();
  }
}

function session(Client: typeof ReflectionV1Client): ReflectionSession {
  const client = new Client(target, credentials.createInsecure());
  atEnd(async () => client.close());
  return new ReflectionSession(client);
}

function decodeFiles(response: ServerReflectionResponse): FileDescriptorProto[] {
  assert.ok(
    response.fileDescriptorResponse,
    `expected files, got ${JSON.stringify(response.errorResponse ?? response)}`,
  );
  return response.fileDescriptorResponse.fileDescriptorProto.map((bytes) =>
    fromBinary(FileDescriptorProtoSchema, bytes),
  );
}

/** What grpcurl does for `describe`: the file declaring the symbol, then each import by name, recursively. */
async function fetchDescriptors(reflection: ReflectionSession, symbol: string) {
  const byName = new Map<string, FileDescriptorProto>();
  const root = decodeFiles(await reflection.ask({ fileContainingSymbol: symbol }));
  assert.ok(root.length > 0, "the declaring file comes back");
  for (const file of root) byName.set(file.name, file);
  const fetched = new Set<string>();
  const fetchImports = async (file: FileDescriptorProto): Promise<void> => {
    for (const dependency of file.dependency) {
      if (fetched.has(dependency)) continue;
      fetched.add(dependency);
      const files = decodeFiles(await reflection.ask({ fileByFilename: dependency }));
      assert.is(files[0]?.name, dependency, "the requested file comes first");
      for (const f of files) byName.set(f.name, f);
      await fetchImports(files[0]!);
    }
  };
  await fetchImports(root[0]!);
  return { root: root[0]!, byName };
}

t.before(async () => {
  target = (await startGrpc()).target;
});

t("list_services names QueryService and the health service", async () => {
  const reflection = session(ReflectionV1Client);
  const response = await reflection.ask({ listServices: "" });
  const names = response.listServicesResponse?.service.map((s) => s.name) ?? [];
  assert.ok(names.includes("querygate.v1.QueryService"), names.join(", "));
  assert.ok(names.includes("grpc.health.v1.Health"), names.join(", "));
  reflection.end();
});

t(
  "QueryService's file and every import it names resolve into a registry with every method's types",
  async () => {
    const reflection = session(ReflectionV1Client);
    const { root, byName } = await fetchDescriptors(reflection, "querygate.v1.QueryService");
    assert.is(root.package, "querygate.v1");
    assert.ok(root.dependency.length > 0, "QueryService's file imports something");
    for (const dependency of root.dependency) assert.ok(byName.has(dependency), `${dependency} was fetched`);

    const registry = createFileRegistry(root, (name) => byName.get(name));
    const service = registry.getService("querygate.v1.QueryService");
    assert.ok(service, "QueryService is in the registry");
    assert.ok(service.methods.length > 0);
    for (const method of service.methods) {
      const input = registry.getMessage(method.input.typeName);
      const output = registry.getMessage(method.output.typeName);
      assert.ok(input, `${method.name} input ${method.input.typeName} resolves`);
      assert.ok(output, `${method.name} output ${method.output.typeName} resolves`);
      assert.ok(input.fields.length > 0, `${method.input.typeName} has fields`);
    }
    assert.ok(registry.getMessage("querygate.v1.ExecuteRequest")?.field.params, "nested field types resolve");
    reflection.end();
  },
);

t("the v1alpha path answers the same as v1", async () => {
  const alpha = session(ReflectionV1AlphaClient);
  const listed = await alpha.ask({ listServices: "" });
  assert.ok(listed.listServicesResponse?.service.some((s) => s.name === "querygate.v1.QueryService"));
  const { root, byName } = await fetchDescriptors(alpha, "querygate.v1.QueryService.Execute");
  const registry = createFileRegistry(root, (name) => byName.get(name));
  assert.is(registry.getService("querygate.v1.QueryService")?.method.execute?.name, "Execute");
  alpha.end();
});

t("an unknown symbol is an error_response with NOT_FOUND, and the stream stays usable", async () => {
  const reflection = session(ReflectionV1Client);
  const response = await reflection.ask({ fileContainingSymbol: "querygate.v1.NoSuchThing" });
  assert.is(response.errorResponse?.errorCode, status.NOT_FOUND);
  assert.match(response.errorResponse?.errorMessage ?? "", /NoSuchThing/);
  assert.is(response.originalRequest?.fileContainingSymbol, "querygate.v1.NoSuchThing");
  const missingFile = await reflection.ask({ fileByFilename: "no/such/file.proto" });
  assert.is(missingFile.errorResponse?.errorCode, status.NOT_FOUND);
  const after = await reflection.ask({ listServices: "" });
  assert.ok(after.listServicesResponse);
  reflection.end();
});

t.run();
