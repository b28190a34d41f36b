/**
 * What REDIS_URL may say, for both halves: one Redis (`redis://`, `rediss://` with TLS), or a Redis
 * Cluster (`redis-cluster://` / `rediss-cluster://`) given as a comma-separated list of seed nodes, e.g.
 * `rediss-cluster://default:secret@10.0.0.1:6379,10.0.0.2:6379`; the client discovers the rest.
 * Errors never repeat the URL: it may hold a password.
 */

export interface RedisNodeAddress {
  host: string;
  port: number;
}

export type RedisTarget =
  | { kind: "single"; url: string }
  | { kind: "cluster"; nodes: RedisNodeAddress[]; username?: string; password?: string; tls: boolean };

const USAGE = "REDIS_URL must be redis://, rediss://, redis-cluster:// or rediss-cluster:// followed by [user:password@]host:port";

export function parseRedisUrl(raw: string): RedisTarget {
  const scheme = /^([a-z-]+):\/\//.exec(raw)?.[1];
  if (scheme === "redis" || scheme === "rediss") {
    try {
      new URL(raw);
    } catch {
      throw new Error(`${USAGE} (the URL does not parse)`);
    }
    return { kind: "single", url: raw };
  }
  if (scheme !== "redis-cluster" && scheme !== "rediss-cluster") throw new Error(`${USAGE} (got scheme ${scheme === undefined ? "none" : JSON.stringify(scheme.slice(0, 32))})`);
  let rest = raw.slice(scheme.length + 3).replace(/\/.*$/, "");
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    const credentials = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = credentials.indexOf(":");
    try {
      username = decodeURIComponent(colon >= 0 ? credentials.slice(0, colon) : credentials) || undefined;
      password = colon >= 0 ? decodeURIComponent(credentials.slice(colon + 1)) : undefined;
    } catch {
      throw new Error(`${USAGE} (the credentials are not valid percent-encoding)`);
    }
  }
  const nodes: RedisNodeAddress[] = [];
  for (const part of rest.split(",")) {
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(part.trim());
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65_535) throw new Error(`${USAGE} (cluster seed node ${nodes.length + 1} is not host:port)`);
    nodes.push({ host: m[1].replace(/^\[|\]$/g, ""), port });
  }
  return { kind: "cluster", nodes, username, password, tls: scheme === "rediss-cluster" };
}
