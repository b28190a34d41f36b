/**
 * The node's Redis clients: an ioredis `Redis` for one instance, an ioredis `Cluster` when REDIS_URL
 * names a cluster (shared/redis-url.ts). Everything the node runs works on both: each script and MULTI
 * touches the keys of one hash slot (shared/redis-keys.ts).
 */
import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { RedisTarget } from "../../shared/redis-url.ts";

export type RedisConnection = Redis | Cluster;

export function openRedisConnection(target: RedisTarget, options: RedisOptions & { lazyConnect?: boolean }): RedisConnection {
  if (target.kind === "single") return new Redis(target.url, options);
  const { lazyConnect, ...redisOptions } = options;
  return new Cluster(target.nodes, {
    lazyConnect,
    redisOptions: { ...redisOptions, username: target.username, password: target.password, tls: target.tls ? {} : undefined },
    // With TLS the nodes announce their addresses; keep the names the operator gave for certificate checks.
    dnsLookup: (address, callback) => callback(null, address),
  });
}

export function isCluster(connection: RedisConnection): connection is Cluster {
  return connection instanceof Cluster;
}
