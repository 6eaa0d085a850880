/**
 * The inbound side of mTLS: who is calling (the SPIFFE ID of the verified client certificate), and
 * whether policy lets them. HTTP callers that are refused get 403 `unauthorized`; TCP connections are
 * closed. Every refusal is logged and emitted as `authorizationDenied`.
 */
import type { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { identityFromSan, spiffeId, type Identity } from '../../certs/spiffe.ts';
import { meshError } from '../errors.ts';
import { callForward, type ForwardLayer } from '../protocols/exchange.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { AuthorizationPolicy } from './policy.ts';

/** Identities per connection: the peer certificate cannot change on a socket, so parse it once, not per request. */
const identities = new WeakMap<Socket, Identity | null>();

/** The caller's identity on an mTLS socket, when its certificate verified and carries one of ours. */
export function peerIdentity(socket: Socket, trustDomain: string): Identity | undefined {
  const known = identities.get(socket);
  if (known !== undefined) return known && known.trustDomain === trustDomain ? known : undefined;
  const tls = socket as TLSSocket;
  if (typeof tls.getPeerCertificate !== 'function' || !tls.authorized || tls.destroyed) return undefined;
  // null once the socket is gone, {} when the peer sent no certificate
  const identity = identityFromSan(tls.getPeerCertificate()?.subjectaltname);
  identities.set(socket, identity ?? null);
  return identity && identity.trustDomain === trustDomain ? identity : undefined;
}

export interface InboundGuardOptions {
  readonly local: () => Identity;
  readonly policy: AuthorizationPolicy;
  readonly events: MeshEvents;
  readonly log: Logger;
}

/** Key under which the caller's SPIFFE ID is left in `exchange.notes` (access log, tracing). */
export const CALLER_NOTE = 'security.caller';

/**
 * What a connection's caller was allowed as: its identity cannot change on a socket and the policy is
 * fixed per guard, so an allowed verdict holds for every request on the connection while the local
 * identity is the same object (a credential rotation makes a new one, and the verdict is taken again).
 */
interface Allowed {
  readonly local: Identity;
  readonly callerId: string;
}
const allowedCallers = new WeakMap<Socket, Allowed>();

/**
 * Inbound HTTP layer: refuses callers the policy denies with 403 before the app sees anything. Not an
 * async function: one allowed request costs a WeakMap lookup and no promise of its own.
 */
export function authorizationLayer(options: InboundGuardOptions): ForwardLayer {
  return (next) =>
    function authorize(x) {
      const local = options.local();
      const socket = x.req.socket;
      const allowed = allowedCallers.get(socket);
      if (allowed !== undefined && allowed.local === local) {
        x.notes.set(CALLER_NOTE, allowed.callerId);
        return callForward(next, x);
      }
      const caller = peerIdentity(socket, local.trustDomain);
      if (!caller) return Promise.reject(meshError('UNAUTHORIZED', 'caller presented no verified SPIFFE identity of this trust domain'));
      const callerId = spiffeId(caller);
      x.notes.set(CALLER_NOTE, callerId);
      const { decision, rule } = options.policy.decide(caller, local);
      if (decision === 'deny') {
        // Not cached: every refused request is logged and counted.
        deny(options, caller, local, 'http', rule ? `rule from "${rule.from}" to "${rule.to}"` : 'default deny');
        return Promise.reject(meshError('UNAUTHORIZED', `${callerId} may not call ${spiffeId(local)} (${rule ? `rule from "${rule.from}" to "${rule.to}"` : 'default: deny'})`));
      }
      allowedCallers.set(socket, { local, callerId });
      return callForward(next, x);
    };
}

/** Wraps the inbound TCP handler: only connections from allowed identities reach the local app. */
export function tcpAuthorizationGate(options: InboundGuardOptions, handler: (socket: Socket) => void): (socket: Socket) => void {
  return (socket) => {
    const local = options.local();
    const caller = peerIdentity(socket, local.trustDomain);
    const verdict = caller ? options.policy.decide(caller, local) : undefined;
    if (caller && verdict?.decision === 'allow') {
      handler(socket);
      return;
    }
    const why = !caller ? 'no verified SPIFFE identity of this trust domain' : verdict?.rule ? `rule from "${verdict.rule.from}" to "${verdict.rule.to}"` : 'default deny';
    if (caller) deny(options, caller, local, 'tcp', why);
    else options.log.warn({ peer: socket.remoteAddress, reason: why }, 'inbound TCP connection refused');
    socket.destroy();
  };
}

function deny(options: InboundGuardOptions, caller: Identity, local: Identity, protocol: 'http' | 'tcp', why: string): void {
  options.events.emit('authorizationDenied', { source: spiffeId(caller), destination: spiffeId(local), protocol });
  options.log.warn({ source: spiffeId(caller), destination: spiffeId(local), protocol, reason: why }, 'authorization denied');
}
