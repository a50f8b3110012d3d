// Entry point of http-bridge: configuration from the environment, then serve.
import { runService } from "../../shared/src/run-service.js";
import { loadConfig } from "./config.js";
import { startBridge } from "./server.js";

await runService("http-bridge", loadConfig, startBridge);
