// Entry point of query-grpc: configuration from the environment, then serve.
import { runService } from "../../shared/src/run-service.js";
import { loadConfig } from "./config.js";
import { startQueryGrpc } from "./grpc/server.js";

await runService("query-grpc", loadConfig, startQueryGrpc);
