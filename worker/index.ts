/** The Worker's entry (wrangler.toml `main`): the Hono app's fetch. */
import { app } from "./app.ts";

export { RedisGateway } from "./redis-gateway.ts";
export default { fetch: app.fetch };
