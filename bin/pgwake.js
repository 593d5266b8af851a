#!/usr/bin/env node
// The `pgwake` command. The sources are TypeScript that Node >= 22.18 runs directly (type
// stripping); Node refuses to strip types under node_modules, so a published package must ship
// compiled JavaScript and point this import at it.
import { run } from "../src/cli/main.ts";

const code = await run(process.argv.slice(2));
// Exit explicitly (timers of closed clients must not hold the process), once stdout has drained.
process.exitCode = code;
process.stdout.write("", () => process.exit(code));
