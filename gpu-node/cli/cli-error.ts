/** Operator tools fail the same way: one line on stderr, exit code 2. */
export function failUsage(message: string): never {
  process.stderr.write(`error: ${message.replace(/\s+/g, " ").trim()}\n`);
  process.exit(2);
}
