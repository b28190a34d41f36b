/** A test file's queues and node processes, made on demand and all stopped and cleaned up at the end. */
import { TestWorker, uniquePrefix } from "../../../stack/chat-jobs.ts";
import { startNode, type NodeProcess } from "../../../stack/node-process.ts";
import { cachedTinyModel } from "../../model/tiny-model.ts";

export class NodeTestbed {
  private readonly workers: TestWorker[] = [];
  private readonly nodes: NodeProcess[] = [];

  /** A queue under its own Redis prefix, played from the Worker's side. */
  queue(name: string): TestWorker {
    const worker = new TestWorker(uniquePrefix(name));
    this.workers.push(worker);
    return worker;
  }

  /** A GPU node process serving `worker`'s queue with the tiny model. */
  async node(worker: TestWorker, name: string, env: Record<string, string> = {}): Promise<NodeProcess> {
    const node = await startNode({ prefix: worker.prefix, modelDir: await cachedTinyModel(), name, env });
    this.nodes.push(node);
    return node;
  }

  async close(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    await Promise.all(this.workers.map((w) => w.cleanup()));
  }
}
