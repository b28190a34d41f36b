/**
 * The node's HTTP face for operators (node:http, METRICS_PORT): `/health` answers while the process
 * lives, `/ready` only while the model is loaded, Redis answers and the node is taking jobs, `/metrics`
 * serves Prometheus text.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface StatusSource {
  /** Why the node is not ready, or null when it is. */
  notReadyReason(): Promise<string | null>;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export interface StatusServer {
  port: number;
  close(): Promise<void>;
}

/** `host`: the address to listen on (METRICS_HOST; loopback unless an operator opens it up). */
export async function startStatusServer(port: number, source: StatusSource, host = "127.0.0.1"): Promise<StatusServer> {
  const server = http.createServer((req, res) => {
    void answer(req.url ?? "/", source).then(({ status, contentType, body }) => {
      res.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

interface Answer {
  status: number;
  contentType: string;
  body: string;
}

const json = (status: number, value: unknown): Answer => ({ status, contentType: "application/json", body: JSON.stringify(value) });

async function answer(url: string, source: StatusSource): Promise<Answer> {
  const path = url.split("?")[0];
  try {
    switch (path) {
      case "/health":
        return json(200, { status: "ok" });
      case "/ready": {
        const reason = await source.notReadyReason();
        return reason === null ? json(200, { status: "ready" }) : json(503, { status: "not_ready", reason });
      }
      case "/metrics": {
        const { contentType, body } = await source.metrics();
        return { status: 200, contentType, body };
      }
      default:
        return json(404, { error: "not found" });
    }
  } catch (err) {
    return json(500, { error: (err as Error).message });
  }
}
