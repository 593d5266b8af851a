import { existsSync, readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";

// The dashboard's browser files are plain JavaScript modules, CSS and SVG, written by hand and
// served as they are from the package: no build step of their own, no CDN, works offline. They
// sit beside this module: src/ui/static in a clone, dist/ui/static in the package (tsc copies no
// such file: the package's build copies the directory). The second place is the package's
// src/ui/static, for a package that ships that directory instead.
const CANDIDATES = [
  new URL("./static/", import.meta.url),
  new URL("../../src/ui/static/", import.meta.url),
];

const TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** One of the dashboard's files. */
export interface Asset {
  type: string;
  body: Uint8Array<ArrayBuffer>;
}

/**
 * The dashboard's files, read once and kept: only names listed in the directory at start, with
 * a known type, are served (a name holds no `/`, so nothing outside the directory is reachable).
 */
export class UiAssets {
  private readonly dir: string | undefined;
  private readonly names: Map<string, string>;
  private readonly cache = new Map<string, Promise<Asset>>();

  constructor() {
    const found = CANDIDATES.find((url) => existsSync(url));
    this.dir = found ? fileURLToPath(found) : undefined;
    this.names = new Map(
      (this.dir ? readdirSync(this.dir) : [])
        .filter((name) => TYPES[extname(name)] !== undefined)
        .map((name) => [name, TYPES[extname(name)]!]),
    );
  }

  /** The file, or undefined when the dashboard has no such file. */
  get(name: string): Promise<Asset> | undefined {
    const type = this.names.get(name);
    if (!type || !this.dir) return undefined;
    let asset = this.cache.get(name);
    if (!asset) {
      asset = readFile(`${this.dir}${name}`).then((bytes) => ({
        type,
        body: new Uint8Array(bytes),
      }));
      this.cache.set(name, asset);
      asset.catch(() => this.cache.delete(name));
    }
    return asset;
  }

  /** Whether the files were found (a package built without them serves none). */
  get available(): boolean {
    return this.names.size > 0;
  }
}
