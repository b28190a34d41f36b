/**
 * The Worker's cancel signal (shared/redis-keys.ts): it SETs `cancel(id)` with a TTL and PUBLISHes the
 * id on `cancelChannel`. A running request hears the message (one subscriber connection per node); a
 * job picked up after the message was sent finds the key instead (`isRaised`, checked at pickup), and
 * a running one reads the key every few steps too, for a message lost while the subscriber reconnected.
 */
import type { RedisConnection } from "./redis-connection.ts";
import type { RedisKeys } from "../../shared/redis-keys.ts";
import type { Logger } from "./logger.ts";

export class CancelListener {
  private constructor(
    private readonly subscriber: RedisConnection,
    private readonly commands: RedisConnection,
    private readonly keys: RedisKeys,
  ) {}

  /** Subscribes on a connection of its own (a subscribed connection can run nothing else). */
  static async start(commands: RedisConnection, keys: RedisKeys, onCancel: (id: string) => void, log: Logger): Promise<CancelListener> {
    const subscriber = commands.duplicate();
    subscriber.on("error", (err: Error) => log.warn({ err: err.message }, "cancel subscriber connection error"));
    subscriber.on("message", (channel: string, id: string) => {
      if (channel === keys.cancelChannel) onCancel(id);
    });
    await subscriber.subscribe(keys.cancelChannel);
    return new CancelListener(subscriber, commands, keys);
  }

  async isRaised(id: string): Promise<boolean> {
    return (await this.commands.exists(this.keys.cancel(id))) === 1;
  }

  async close(): Promise<void> {
    await this.subscriber.quit().catch(() => this.subscriber.disconnect());
  }
}
