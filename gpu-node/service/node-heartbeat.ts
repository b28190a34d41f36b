/**
 * Announces this node as alive in the Redis node registry every NODE_HEARTBEAT_MS while it takes jobs,
 * and withdraws at shutdown. The Worker refuses new requests (503) only when no node is announced.
 */
import type { RedisConnection } from "./redis-connection.ts";
import { HEARTBEAT_SCRIPT, NODE_HEARTBEAT_MS } from "../../shared/node-registry.ts";
import type { Logger } from "./logger.ts";

export class NodeHeartbeat {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: RedisConnection,
    private readonly registryKey: string,
    private readonly nodeName: string,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => void this.beat(), NODE_HEARTBEAT_MS);
    this.timer.unref();
  }

  /** Stops announcing and removes the entry, so the pool's size is right at once. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.redis.zrem(this.registryKey, this.nodeName).catch(() => undefined);
  }

  private async beat(): Promise<void> {
    try {
      await this.redis.eval(HEARTBEAT_SCRIPT, 1, this.registryKey, this.nodeName);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "heartbeat failed");
    }
  }
}
