// gRPC server reflection (grpc.reflection.v1 and the older v1alpha, which has
// the same messages) served from the descriptor set that buf builds, imports
// included. Every file's dependencies resolve, so grpcurl and buf curl can
// describe and call everything, including google/protobuf imports.

import { fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import { descriptorSetBase64 } from "../../../../proto/gen/descriptor-set.js";
import type {
  ServerReflectionRequest,
  ServerReflectionResponse,
  ServerReflectionService,
} from "../../../../proto/gen/grpc/reflection/v1/reflection.js";
import type { ServerDuplexCall, ServiceHandlers } from "../rpc/server-call.js";

export class DescriptorIndex {
  private readonly files = new Map<string, { proto: FileDescriptorProto; bytes: Buffer }>();
  private readonly symbols = new Map<string, string>();

  constructor(setBytes: Uint8Array) {
    const set = fromBinary(FileDescriptorSetSchema, setBytes);
    for (const file of set.file) {
      this.files.set(file.name, {
        proto: file,
        bytes: Buffer.from(toBinary(FileDescriptorProtoSchema, file)),
      });
      const prefix = file.package ? `${file.package}.` : "";
      for (const service of file.service) {
        this.symbols.set(prefix + service.name, file.name);
        for (const method of service.method)
          this.symbols.set(`${prefix}${service.name}.${method.name}`, file.name);
      }
      for (const e of file.enumType) this.symbols.set(prefix + e.name, file.name);
      const addMessages = (messages: DescriptorProto[], scope: string) => {
        for (const m of messages) {
          const name = scope + m.name;
          this.symbols.set(name, file.name);
          for (const e of m.enumType) this.symbols.set(`${name}.${e.name}`, file.name);
          addMessages(m.nestedType, `${name}.`);
        }
      };
      addMessages(file.messageType, prefix);
    }
  }

  fileOf(symbol: string): string | undefined {
    return this.symbols.get(symbol.replace(/^\./, ""));
  }

  has(file: string): boolean {
    return this.files.has(file);
  }

  /** The file first, then its transitive dependencies not yet in `sent`. */
  closure(file: string, sent: Set<string>): Buffer[] {
    const out: Buffer[] = [];
    const visit = (name: string) => {
      const entry = this.files.get(name);
      if (!entry || sent.has(name)) return;
      sent.add(name);
      out.push(entry.bytes);
      for (const dep of entry.proto.dependency) visit(dep);
    };
    visit(file);
    return out;
  }
}

export const descriptorIndex = new DescriptorIndex(Buffer.from(descriptorSetBase64, "base64"));

export function reflectionHandlers(
  index: DescriptorIndex,
  services: () => string[],
): ServiceHandlers<typeof ServerReflectionService> {
  return {
    serverReflectionInfo(call: ServerDuplexCall<ServerReflectionRequest, ServerReflectionResponse>) {
      const sent = new Set<string>();
      // A client that asks and does not read waits in its own flow control, not in our memory.
      let waiting = false;
      call.on("drain", () => {
        if (!waiting) return;
        waiting = false;
        call.resume();
      });
      call.on("data", (request: ServerReflectionRequest) => {
        if (!call.write(answer(index, services, request, sent)) && !waiting) {
          waiting = true;
          call.pause();
        }
      });
      call.on("end", () => call.end());
    },
  };
}

function answer(
  index: DescriptorIndex,
  services: () => string[],
  request: ServerReflectionRequest,
  sent: Set<string>,
): ServerReflectionResponse {
  const base: ServerReflectionResponse = { validHost: request.host, originalRequest: request };
  const notFound = (what: string): ServerReflectionResponse => ({
    ...base,
    errorResponse: { errorCode: status.NOT_FOUND, errorMessage: `${what} not found` },
  });
  const files = (file: string): ServerReflectionResponse => {
    // A client may ask again for a file it already got on this stream: send it anyway.
    if (sent.has(file)) sent.delete(file);
    return { ...base, fileDescriptorResponse: { fileDescriptorProto: index.closure(file, sent) } };
  };
  if (request.listServices !== undefined) {
    return { ...base, listServicesResponse: { service: services().map((name) => ({ name })) } };
  }
  if (request.fileByFilename !== undefined) {
    return index.has(request.fileByFilename)
      ? files(request.fileByFilename)
      : notFound(`file ${request.fileByFilename}`);
  }
  if (request.fileContainingSymbol !== undefined) {
    const file = index.fileOf(request.fileContainingSymbol);
    return file ? files(file) : notFound(`symbol ${request.fileContainingSymbol}`);
  }
  if (request.fileContainingExtension !== undefined) {
    return notFound(`extension ${request.fileContainingExtension.containingType}`);
  }
  if (request.allExtensionNumbersOfType !== undefined) {
    const file = index.fileOf(request.allExtensionNumbersOfType);
    if (!file) return notFound(`type ${request.allExtensionNumbersOfType}`);
    return {
      ...base,
      allExtensionNumbersResponse: { baseTypeName: request.allExtensionNumbersOfType, extensionNumber: [] },
    };
  }
  return {
    ...base,
    errorResponse: { errorCode: status.INVALID_ARGUMENT, errorMessage: "empty reflection request" },
  };
}
