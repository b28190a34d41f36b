/**
 * Stopgap until the root vitest.config.ts's "worker" project pre-bundles ioredis and BullMQ: the same
 * project plus `deps.optimizer.ssr`. Without it, @cloudflare/vitest-pool-workers 0.15.1's module
 * fallback resolves ioredis's `require("debug")` (in built/utils/debug.js) to that file itself, and
 * importing ioredis dies with "Maximum call stack size exceeded".
 * It also binds the optional REDIS_GATEWAY Durable Object, so worker/test/gateway.test.ts runs.
 * Run: npx vitest run --config worker/vitest.workerd.config.ts
 */
import { builtinModules } from "node:module";
import { fileURLToPath } from "node:url";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    projects: [{
      plugins: [cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: { DEV_API_KEY: "sk-test-dev-key", REDIS_PREFIX: "phi4test" },
          // The optional admission gateway (worker/redis-gateway.ts), so its test runs here.
          durableObjects: { REDIS_GATEWAY: "RedisGateway" },
        },
      })],
      test: {
        name: "worker",
        include: ["worker/**/*.test.ts"],
        testTimeout: 30_000,
        deps: {
          optimizer: {
            ssr: {
              enabled: true,
              include: ["ioredis", "bullmq"],
              // workerd provides node:* through nodejs_compat: leave them to the runtime.
              rolldownOptions: { platform: "node", external: [/^node:/, ...builtinModules] },
            },
          },
        },
      },
    }],
  },
});
