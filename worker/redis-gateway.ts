/**
 * EXPERIMENT (measured against per-request connections, see bench/worker.ts): a Durable Object that
 * owns one long-lived Redis connection and runs admission + enqueue on it, so a request does not pay
 * for a TCP connect. Used only when the REDIS_GATEWAY binding exists.
 */
import { DurableObject } from "cloudflare:workers";
import { ApiError } from "../shared/errors.ts";
import { redisKeys } from "../shared/redis-keys.ts";
import { admitAndEnqueue, type AdmissionTicket } from "./admission.ts";
import type { WorkerEnv } from "./env.ts";
import { raiseCancel } from "./cancel.ts";
import { chatQueue } from "./queue.ts";
import { release, type Admission } from "./rate-limit.ts";
import { asServiceError, openRedis, type RedisClient } from "./redis.ts";

export type GatewayOutcome =
  | { ok: true; admission: Admission }
  | { ok: false; error: { status: number; type: ApiError["type"]; message: string; code: string | null; param: string | null; retryAfter?: number } };

export class RedisGateway extends DurableObject<WorkerEnv> {
  private redis: RedisClient | null = null;
  private redisUrl = "";

  /** The long-lived connection, reopened when it broke or the Worker names another Redis. */
  private async connection(url: string): Promise<RedisClient> {
    if (this.redis?.status === "ready" && this.redisUrl === url) return this.redis;
    this.redis?.disconnect();
    this.redis = null;
    this.redis = await openRedis(url);
    this.redisUrl = url;
    return this.redis;
  }

  async admitAndEnqueue(redisUrl: string, prefix: string, ticket: AdmissionTicket): Promise<GatewayOutcome> {
    try {
      const redis = await this.connection(redisUrl);
      return { ok: true, admission: await admitAndEnqueue(redis, redisKeys(prefix), ticket) };
    } catch (err) {
      const e = asServiceError(err);
      return { ok: false, error: { status: e.status, type: e.type, message: e.message, code: e.code, param: e.param, retryAfter: e.retryAfter } };
    }
  }

  /** Takes back an admitted job whose client cannot be served (the Worker could not open its relay). */
  async withdraw(redisUrl: string, prefix: string, id: string, keyHash: string, admission: Admission): Promise<void> {
    const keys = redisKeys(prefix);
    const redis = await this.connection(redisUrl);
    const queue = chatQueue(redis, keys);
    try {
      await queue.remove(id);
    } finally {
      await queue.close().catch(() => {});
    }
    await raiseCancel(redis, keys, id); // in case a node took it already
    await release(redis, keys, keyHash, id, admission, 0);
  }
}

export function reviveGatewayError(e: Extract<GatewayOutcome, { ok: false }>["error"]): ApiError {
  return new ApiError(e.status, e.type, e.message, e.code, e.param, e.retryAfter);
}
