import { defineConfig } from "vitest/config";

// The package test packs the project and installs the tarball into a new project: it runs on its
// own (`npm test` runs it after the main suite), one file, with the same test Postgres.
export default defineConfig({
  test: {
    root: new URL("../../", import.meta.url).pathname,
    include: ["test/package/**/*.test.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: "forks",
    maxWorkers: 1,
  },
});
