import type { EndpointState } from '../cluster/endpoint-state.ts';
import { hash32 } from './hash.ts';
import type { PickContext, Picker } from './types.ts';

/** The opaque cookie value naming an endpoint: a hash of its key, so addresses are not exposed. */
export function stickyId(state: EndpointState): string {
  return hash32(state.key, 0x5eed).toString(36);
}

/**
 * Sticky sessions over any picker (HAProxy `cookie ... insert`, Traefik sticky): when the request names
 * a pinned endpoint that is still available (and not the one a retry must avoid), it wins; otherwise
 * the inner picker chooses and the response re-pins the client.
 */
export class StickyPicker implements Picker {
  readonly #inner: Picker;
  #byId = new Map<string, EndpointState>();

  constructor(inner: Picker) {
    this.#inner = inner;
  }

  update(endpoints: readonly EndpointState[]): void {
    this.#byId = new Map(endpoints.map((ep) => [stickyId(ep), ep]));
    this.#inner.update(endpoints);
  }

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState {
    if (ctx.pinned !== undefined) {
      const pinned = this.#byId.get(ctx.pinned);
      if (pinned && pinned !== ctx.avoid && candidates.includes(pinned)) return pinned;
    }
    return this.#inner.pick(candidates, ctx);
  }
}
