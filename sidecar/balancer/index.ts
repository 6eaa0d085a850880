import type { Balancer } from '../config/schema.ts';
import { LeastRequestPicker } from './least-request.ts';
import { MaglevPicker } from './maglev.ts';
import { P2cEwmaPicker } from './p2c-ewma.ts';
import { RandomPicker } from './random.ts';
import { RingHashPicker } from './ring-hash.ts';
import { RoundRobinPicker } from './round-robin.ts';
import { StickyPicker } from './sticky.ts';
import type { Picker } from './types.ts';

const FACTORIES: Record<Balancer, () => Picker> = {
  round_robin: () => new RoundRobinPicker(),
  least_request: () => new LeastRequestPicker(),
  random: () => new RandomPicker(),
  p2c_ewma: () => new P2cEwmaPicker(),
  ring_hash: () => new RingHashPicker(),
  maglev: () => new MaglevPicker(),
};

export interface PickerOptions {
  /** Wrap the picker so a sticky cookie can pin clients to an endpoint. */
  readonly sticky?: boolean;
}

/** Builds the picker named in config. */
export function createPicker(kind: Balancer, options: PickerOptions = {}): Picker {
  const picker = FACTORIES[kind]();
  return options.sticky ? new StickyPicker(picker) : picker;
}

export type { Picker, PickContext } from './types.ts';
