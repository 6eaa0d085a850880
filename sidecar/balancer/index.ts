import type { Balancer } from '../config/schema.ts';
import { LeastRequestPicker } from './least-request.ts';
import { RoundRobinPicker } from './round-robin.ts';
import type { Picker } from './types.ts';

const FACTORIES: Record<Balancer, () => Picker> = {
  round_robin: () => new RoundRobinPicker(),
  least_request: () => new LeastRequestPicker(),
};

/** Builds the picker named in config. */
export function createPicker(kind: Balancer): Picker {
  return FACTORIES[kind]();
}

export type { Picker, PickContext } from './types.ts';
