import type { EndpointState } from '../cluster/endpoint-state.ts';

/** Facts about the request a balancer may use. */
export interface PickContext {
  /** Endpoint to avoid (the one the previous attempt failed on) when others exist. */
  readonly avoid?: EndpointState | undefined;
  /** A key for hash-based pickers (header, cookie or source IP value). */
  readonly hashKey?: string | undefined;
  /** Sticky-session id of the endpoint the client is pinned to (see `stickyId`), if any. */
  readonly pinned?: string | undefined;
}

/** Chooses one endpoint among available candidates. Pure: no I/O. */
export interface Picker {
  /** Called when the endpoint set changes, so a picker can precompute (rings, tables). */
  update(endpoints: readonly EndpointState[]): void;
  /** Picks among `candidates` (non-empty, all available). */
  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState;
}

/** Random integer in [0, n). Injected so tests can make picks deterministic. */
export type RandomInt = (n: number) => number;

export const mathRandomInt: RandomInt = (n) => Math.floor(Math.random() * n);
