/**
 * A tool call's id (`call_…`): a hash of the completion id, the choice and the call's position, so a
 * node that resumes a stream after a failover names the calls exactly as the first node did.
 */
import { createHash } from "node:crypto";

export function toolCallId(completionId: string, choice: number, call: number): string {
  return `call_${createHash("sha256").update(`${completionId}:${choice}:${call}`).digest("base64url").slice(0, 24)}`;
}
