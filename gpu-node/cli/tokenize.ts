/** `npm run -s tokenize -- "<text>"` prints the Phi-4 token ids of the text as one JSON array. */
import { phi4Tokenizer } from "../tokenizer/phi4-tokenizer.ts";
import { failUsage } from "./cli-error.ts";

const args = process.argv.slice(2);
if (args.length !== 1) failUsage('usage: npm run -s tokenize -- "<text>" (exactly one argument)');
process.stdout.write(`${JSON.stringify(phi4Tokenizer().encode(args[0]))}\n`);
