/**
 * Silences chosen connections of a fault proxy: those open now and those opened while the silence
 * lasts (a pool that replaces a dead connection meets the same silent network), until `heal()`.
 * Connections are told apart by their startup packet (`applicationNameIs("pgwake-worker")`).
 */
import type {
  ConnectionMode,
  FaultProxy,
  ProxyConnection,
  SilenceDirection,
} from "../helpers/faultProxy.ts";

export interface Silence {
  /** When the silence began (Date.now(), after the connections were switched). */
  readonly since: number;
  /** Connections it silenced so far (open at the start, or opened during it). */
  readonly silenced: number;
  /** Lets every silenced connection pass again; blackholed bytes are gone for good. */
  heal(): void;
}

export function silence(
  proxy: FaultProxy,
  where: (connection: ProxyConnection) => boolean,
  options: { mode?: "blackhole" | "stall"; direction?: SilenceDirection } = {},
): Silence {
  const mode: ConnectionMode = {
    silence: options.mode ?? "blackhole",
    direction: options.direction ?? "both",
  };
  const touched = new Set<ProxyConnection>();
  const apply = (connection: ProxyConnection) => {
    if (!where(connection)) return;
    touched.add(connection);
    connection.setMode(mode);
  };
  for (const connection of proxy.connections()) apply(connection);
  // A new connection is known by its startup packet: from then on nothing passes (the server's
  // answer to the startup is lost), as on a network that went silent.
  proxy.on("startup", apply);
  const since = Date.now();
  let healed = false;
  return {
    since,
    get silenced() {
      return touched.size;
    },
    heal() {
      if (healed) return;
      healed = true;
      proxy.off("startup", apply);
      for (const connection of touched) connection.setMode("pass");
    },
  };
}
