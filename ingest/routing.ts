import {
  integrationId,
  type CalIntegrationConfig,
  type StripeIntegrationConfig,
  type TallyConfig,
} from '../core/config/tally-config.js';

/** Lookups derived from one configuration snapshot; rebuilt on every reload, never mutated. */
export interface Routing {
  config: TallyConfig;
  /** Which configuration file version this is (SHA-256 of its text). */
  configDigest: string;
  stripe: Map<string, StripeIntegrationConfig>;
  cal: Map<string, CalIntegrationConfig>;
  /** Outbox destinations that want a Stripe integration's events. */
  destinations: Map<string, string[]>;
}

export function buildRouting(config: TallyConfig, configDigest: string): Routing {
  const destinations = new Map<string, string[]>();
  for (const s of config.stripe) {
    const id = integrationId(s);
    destinations.set(
      id,
      config.metaPixels
        .filter(
          (p) =>
            p.namespace === s.namespace && (!p.stripeIntegrations || p.stripeIntegrations.includes(s.name)),
        )
        .map((p) => `meta:${integrationId(p)}`),
    );
  }
  return {
    config,
    configDigest,
    stripe: new Map(config.stripe.map((s) => [integrationId(s), s])),
    cal: new Map(config.cal.map((c) => [integrationId(c), c])),
    destinations,
  };
}
