// Structured JSON logs (pino). Tokens and parameter values are never logged:
// the redact list is a safety net for accidental inclusion.
import { pino } from "pino";

export type Logger = pino.Logger;

export function createLogger(service: string, level: string): Logger {
  return pino({
    name: service,
    level,
    base: { service },
    redact: {
      paths: ["authorization", "*.authorization", "token", "*.token", "params", "*.params"],
      remove: true,
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
