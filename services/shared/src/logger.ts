// Structured JSON logs (pino). Tokens and parameter values are never logged:
// the redact list is a safety net for accidental inclusion.
import { pino } from "pino";

export type Logger = pino.Logger;

export function createLogger(service: string, level: string): Logger {
  return pino(
    {
      name: service,
      level,
      base: { service },
      redact: {
        paths: ["authorization", "*.authorization", "token", "*.token", "params", "*.params"],
        remove: true,
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    bufferedOutput(1),
  );
}

/** How long a log line may wait in the buffer before it is written. */
const FLUSH_EVERY_MS = 200;

/**
 * Lines to `fd` (standard output in production), written in blocks of at
 * least 4 KiB (or every 200 ms) instead of one synchronous write per line:
 * with a line per request, that write was the single biggest cost of a small
 * query in query-grpc's profile. The timer flushes only while bytes wait
 * (lines in, less what sonic-boom reports written): an idle process makes no
 * writes, where a flush of an empty buffer still sent an empty write through
 * the thread pool, five wake-ups a second per process. Whatever is buffered
 * is written synchronously when the process exits, so only a SIGKILL can lose
 * the last 200 ms of lines.
 */
export function bufferedOutput(fd: number): pino.DestinationStream {
  const destination = pino.destination({ dest: fd, sync: false, minLength: 4096 });
  let waiting = 0;
  const write = destination.write.bind(destination);
  destination.write = (line: string) => {
    waiting += Buffer.byteLength(line);
    return write(line);
  };
  destination.on("write", (bytes: number) => {
    waiting -= bytes;
  });
  const timer = setInterval(() => {
    if (waiting <= 0) return;
    try {
      destination.flush();
    } catch {
      // closed: the exit handler below wrote what was left
    }
  }, FLUSH_EVERY_MS);
  timer.unref();
  process.once("exit", () => {
    try {
      destination.flushSync();
    } catch {
      // the output is already gone: nothing left to write to
    }
  });
  return destination;
}

const auditLoggers = new WeakMap<Logger, Logger>();

/**
 * `logger` without the redaction safety net, for the one audit line per
 * request: it is built field by field from values that are never secret
 * (ids, names, kinds, counts), and redaction's walk over it doubled its cost.
 */
export function auditLogger(logger: Logger): Logger {
  let audit = auditLoggers.get(logger);
  if (!audit) {
    audit = logger.child({}, { redact: [] });
    auditLoggers.set(logger, audit);
  }
  return audit;
}
