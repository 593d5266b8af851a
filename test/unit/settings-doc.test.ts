import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  renderConfigurationDoc,
  renderSettingsTable,
  replaceSettingsTable,
  TABLE_END,
  TABLE_START,
} from "../../src/cli/settings-doc.ts";
import { SETTING_LIST } from "../../src/settings.ts";

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

describe("docs/configuration.md", () => {
  it("is what src/settings.ts generates (run `npm run docs` after changing a setting)", () => {
    expect(read("docs/configuration.md")).toBe(renderConfigurationDoc());
  });

  it("has a row per setting with its variable, flag and default", () => {
    const table = renderSettingsTable();
    for (const s of SETTING_LIST) {
      expect(table).toContain(`| \`${s.env}\` |`);
      expect(table).toContain(s.switch ? `--[no-]${s.flag}` : `--${s.flag} <`);
    }
    expect(table).toContain("| `PGWAKE_LEASE_MS` | `--lease-ms <ms>` | `30000` | start, worker |");
  });

  it("keeps the README's settings table current when it has the markers", () => {
    const readme = read("README.md");
    expect(replaceSettingsTable(readme)).toBe(readme);
  });

  it("replaces only what is between the markers", () => {
    const text = `before\n${TABLE_START}\nold table\n${TABLE_END}\nafter\n`;
    expect(replaceSettingsTable(text)).toBe(
      `before\n${TABLE_START}\n${renderSettingsTable()}\n${TABLE_END}\nafter\n`,
    );
    expect(replaceSettingsTable("no markers")).toBe("no markers");
  });
});
