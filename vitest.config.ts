import { builtinModules } from "node:module";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// Two kinds of tests: the Worker's run inside workerd (the runtime it ships on), the rest in Node.
export default defineConfig({
  test: {
    projects: [
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              // What .dev.vars gives `wrangler dev`: the tests run as local development.
              bindings: { DEV_API_KEY: "sk-test-dev-key", LOCAL_DEVELOPMENT: "true", REDIS_URL: "redis://127.0.0.1:6379", REDIS_PREFIX: "phi4test" },
            },
          }),
        ],
        test: {
          name: "worker",
          include: ["worker/**/*.test.ts"],
          testTimeout: 30_000,
          deps: {
            optimizer: {
              // Pre-bundle ioredis and BullMQ: the pool's module fallback otherwise resolves ioredis's
              // require("debug") to the requiring file itself and recurses forever. node:* stays with workerd.
              ssr: {
                enabled: true,
                include: ["ioredis", "bullmq"],
                rolldownOptions: { platform: "node", external: [/^node:/, ...builtinModules] },
              },
            },
          },
        },
      },
      {
        test: {
          name: "node",
          include: ["shared/**/*.test.ts", "gpu-node/**/*.test.ts", "bench/**/*.test.ts", "test/**/*.test.ts"],
          environment: "node",
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
