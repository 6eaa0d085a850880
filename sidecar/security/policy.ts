/**
 * Authorization policy, like Consul intentions: rules allow or deny a source service calling a
 * destination service. The most specific matching rule wins (an exact source beats a namespace
 * wildcard, which beats "*"; then the same for the destination), deny wins a tie, and when nothing
 * matches the configured default decides. Pure: decided from identities alone.
 */
import { spiffeId, type Identity } from '../../certs/spiffe.ts';
import type { AuthorizationRule } from './config.ts';

export type Decision = 'allow' | 'deny';

export interface PolicyDecision {
  readonly decision: Decision;
  /** The rule that decided, or undefined when the default did. */
  readonly rule?: AuthorizationRule | undefined;
}

/** How specifically `pattern` names `who`: -1 no match, 0 "*", 1 namespace wildcard, 2 exact. */
export function matchScore(pattern: string, who: Identity): number {
  if (pattern === '*') return 0;
  if (pattern.startsWith('spiffe://')) return pattern === spiffeId(who) ? 2 : -1;
  const slash = pattern.indexOf('/');
  if (slash < 0) return pattern === who.service ? 2 : -1;
  const namespace = pattern.slice(0, slash);
  const service = pattern.slice(slash + 1);
  if (namespace !== who.namespace) return -1;
  if (service === '*') return 1;
  return service === who.service ? 2 : -1;
}

export class AuthorizationPolicy {
  readonly #rules: readonly AuthorizationRule[];
  readonly #default: Decision;

  constructor(rules: readonly AuthorizationRule[], defaultDecision: Decision) {
    this.#rules = rules;
    this.#default = defaultDecision;
  }

  /** Decides whether `source` may call `destination`. */
  decide(source: Identity, destination: Identity): PolicyDecision {
    let best: { rule: AuthorizationRule; score: number } | undefined;
    for (const rule of this.#rules) {
      const from = matchScore(rule.from, source);
      const to = matchScore(rule.to, destination);
      if (from < 0 || to < 0) continue;
      const score = from * 3 + to;
      if (!best || score > best.score || (score === best.score && rule.action === 'deny')) best = { rule, score };
    }
    return best ? { decision: best.rule.action, rule: best.rule } : { decision: this.#default };
  }
}
