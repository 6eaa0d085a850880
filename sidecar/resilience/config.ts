/** The resilience and affinity config sub-schemas, gathered for `config/schema.ts`. */
export { hashPolicySchema, stickySchema } from '../balancer/hash-config.ts';
export { circuitBreakerSchema } from './circuit-breaker-config.ts';
export { healthCheckSchema } from './health-check-config.ts';
export { outlierDetectionSchema } from './outlier-config.ts';
export { connectionLimitSchema, rateLimitSchema } from './rate-limit-config.ts';
export { retrySchema } from './retry-config.ts';
