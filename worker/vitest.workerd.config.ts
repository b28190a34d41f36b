import { builtinModules } from "node:module";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";
export default defineConfig({
  test: {
    projects: [{
      plugins: [cloudflareTest({ wrangler: { configPath: "./wrangler.toml" }, miniflare: { bindings: { DEV_API_KEY: "sk-test-dev-key", REDIS_PREFIX: "phi4test" } } })],
      test: { name: "worker", include: ["worker/**/*.test.ts"], testTimeout: 30_000,
        deps: { optimizer: { ssr: { enabled: true, include: ["ioredis", "bullmq"],
          rolldownOptions: { platform: "node", external: [/^node:/, ...builtinModules] } } } } },
    }],
  },
});
