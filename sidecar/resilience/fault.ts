/**
 * Fault injection (Istio/Envoy style, for chaos testing): per route, delay a share of requests before
 * they are forwarded, and answer a share with an error status without forwarding them. Aborted
 * responses are proxy-made: `x-meshlet-error: fault_injected`.
 */
import { ErrorCodes, MeshletError } from '../errors.ts';
import type { Forward, ProxyExchange, UpstreamResponse } from '../protocols/exchange.ts';
import type { FaultConfig } from '../routing/config.ts';

export interface FaultDeps {
  /** The route, for error messages. */
  readonly route: string;
  /** Uniform in [0, 1); injected by tests. */
  readonly random?: () => number;
}

/** Waits `ms`, or rejects with the signal's reason when the client goes away first. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Builds the fault layer around `next`; a config injecting nothing returns `next` itself. */
export function createFault(conf: FaultConfig, next: Forward, deps: FaultDeps): Forward {
  const random = deps.random ?? Math.random;
  const delayShare = (conf.delay?.percent ?? 0) / 100;
  const delayMs = conf.delay?.duration ?? 0;
  const abortShare = (conf.abort?.percent ?? 0) / 100;
  const status = conf.abort?.status ?? ErrorCodes.FAULT_INJECTED.status;
  if ((delayShare === 0 || delayMs === 0) && abortShare === 0) return next;
  const spec = { ...ErrorCodes.FAULT_INJECTED, status };
  return async function fault(x: ProxyExchange): Promise<UpstreamResponse> {
    if (delayShare > 0 && delayMs > 0 && random() < delayShare) {
      x.notes.set('fault', 'delay');
      await delay(delayMs, x.signal);
    }
    if (abortShare > 0 && random() < abortShare) {
      x.notes.set('fault', 'abort');
      throw new MeshletError(spec, `fault injected by route ${deps.route}: answered ${status} without forwarding`);
    }
    return next(x);
  };
}
