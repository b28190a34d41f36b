/** The Worker's entry (wrangler.toml `main`): the Hono app's fetch. */
import { app } from "./app.ts";

export default { fetch: app.fetch };
