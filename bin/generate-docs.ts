// `npm run docs`: writes docs/configuration.md from src/settings.ts, and the settings table of
// README.md when it has the markers (see src/cli/settings-doc.ts). test/unit/settings-doc.test.ts
// fails when either is stale.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { renderConfigurationDoc, replaceSettingsTable } from "../src/cli/settings-doc.ts";

const root = new URL("../", import.meta.url);
const doc = new URL("docs/configuration.md", root);
writeFileSync(doc, renderConfigurationDoc());
console.log("wrote docs/configuration.md");

const readme = new URL("README.md", root);
if (existsSync(readme)) {
  const before = readFileSync(readme, "utf8");
  const after = replaceSettingsTable(before);
  if (after !== before) {
    writeFileSync(readme, after);
    console.log("updated the settings table of README.md");
  }
}
