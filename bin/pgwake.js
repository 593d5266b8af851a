#!/usr/bin/env node
// The `pgwake` command. Installed from the package it runs the compiled JavaScript in dist/; in
// a clone of the repository (where src/ is present) it runs the TypeScript sources as they are,
// which Node strips of their types from 22.18 on. Written for any Node: an older one gets a
// clear message rather than a syntax or module error.
import { existsSync } from "node:fs";

const MINIMUM = [22, 18];
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < MINIMUM[0] || (major === MINIMUM[0] && minor < MINIMUM[1])) {
  process.stderr.write(
    `pgwake needs Node.js ${MINIMUM.join(".")} or newer; this is ${process.versions.node} (${process.execPath}).\n` +
      "Install a current Node.js (24 LTS recommended), e.g. with nvm, fnm or your package manager.\n",
  );
  process.exit(2);
}

const source = new URL("../src/cli/main.ts", import.meta.url);
const entry = existsSync(source) ? source : new URL("../dist/cli/main.js", import.meta.url);
const { run } = await import(entry.href);
const code = await run(process.argv.slice(2));
// Exit explicitly (timers of closed clients must not hold the process), once stdout has drained.
process.exitCode = code;
process.stdout.write("", () => process.exit(code));
