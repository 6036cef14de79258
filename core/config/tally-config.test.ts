import { describe, expect, it } from 'vitest';
import { parseConfig } from './tally-config.js';

describe('the Tally config file', () => {
  it('fills in defaults from a minimal file', () => {
    const config = parseConfig('stripe:\n  - {namespace: growth, name: acme, signingSecrets: [whsec_abc]}\n');
    expect(config.ingest).toEqual({
      host: '0.0.0.0',
      port: 8080,
      adminPort: 9090,
      bodyLimitBytes: 1048576,
      stripeToleranceSeconds: 300,
    });
    expect(config.stripe[0]?.conversionTypes).toHaveLength(6);
    expect(config.cal).toEqual([]);
  });

  it('names every bad field by its path and never echoes the secret values', () => {
    const text = JSON.stringify({
      stripe: [
        { namespace: 'growth', name: 'Acme', signingSecrets: ['sk_live_oops'], conversionTypes: ['refund'] },
      ],
      cal: [{ namespace: 'growth', name: 'calls', webhookSecrets: ['short'] }],
      metaPixels: [{ namespace: 'growth', name: 'px', pixelId: '123' }],
      ingest: { stripeToleranceSeconds: 0 },
      extra: true,
    });
    let message = '';
    try {
      parseConfig(text, 'tally.yaml');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('tally.yaml is invalid');
    expect(message).toContain('stripe[0].name: must be a Kubernetes resource name');
    expect(message).toContain('stripe[0].signingSecrets[0]: must be a Stripe signing secret (whsec_…)');
    expect(message).toMatch(/stripe\[0\]\.conversionTypes\[0\]: Invalid option/);
    expect(message).toContain('cal[0].webhookSecrets[0]: must be at least 16 characters');
    expect(message).toContain('metaPixels[0].pixelId: must be 15 to 17 digits');
    expect(message).toMatch(/ingest\.stripeToleranceSeconds: Too small/);
    expect(message).toMatch(/\(root\): Unrecognized key: "extra"/);
    expect(message).not.toContain('sk_live_oops');
    expect(message).not.toContain('short');
  });

  it('rejects text that is not YAML and duplicate integrations', () => {
    expect(() => parseConfig('stripe: [', 'f')).toThrow(/f: not valid YAML or JSON/);
    const dup = '{namespace: a, name: b, signingSecrets: [whsec_1]}';
    expect(() => parseConfig(`stripe: [${dup}, ${dup}]`)).toThrow(/stripe\[1\]\.name: duplicate a\/b/);
  });
});
