/**
 * A loaded graph's inputs and outputs against the names its layout promises, so a model file that does not
 * match its model-config.json fails at load with the names that differ, not at the first run.
 */
import type * as ort from "onnxruntime-node";
import { ModelFilesError } from "../model/model-files.ts";

export function checkSessionIo(session: ort.InferenceSession, expectIn: string[], expectOut: string[], mismatch: string): void {
  const missingIn = expectIn.filter((n) => !session.inputNames.includes(n));
  const missingOut = expectOut.filter((n) => !session.outputNames.includes(n));
  const extraIn = session.inputNames.filter((n) => !expectIn.includes(n));
  if (missingIn.length === 0 && missingOut.length === 0 && extraIn.length === 0) return;
  const parts = [
    missingIn.length ? `missing inputs ${missingIn.slice(0, 4).join(", ")}` : "",
    missingOut.length ? `missing outputs ${missingOut.slice(0, 4).join(", ")}` : "",
    extraIn.length ? `unexpected inputs ${extraIn.slice(0, 4).join(", ")}` : "",
  ].filter(Boolean);
  throw new ModelFilesError(`${mismatch}: ${parts.join("; ")}`);
}
