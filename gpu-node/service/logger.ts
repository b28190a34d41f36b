/**
 * Structured JSON logs (pino), one line per event. Log lines name requests by id and count tokens;
 * they never carry prompts, completions or keys: the redaction below is a second line of defence
 * for a careless `log.info({ job })`, not the first.
 */
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string, nodeName: string): Logger {
  return pino({
    level,
    base: { service: "gpu-node", node: nodeName },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ["request", "messages", "*.request", "*.messages", "*.data", "*.redisUrl", "authorization", "*.authorization"],
      censor: "[redacted]",
    },
  });
}
