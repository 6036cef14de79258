import { describe, expect, it } from 'vitest';
import { parseRedriveFilter } from './main.js';
import { mapEvent, wantsCustomer, type StoredEvent } from './mapping.js';
import { SUBCODE_PARAMETER_NOT_HASHED, validateServerEvent } from './meta/event.js';
import { buildUserData, sha256Hex as sha } from './meta/user-data.js';
import { jittered } from './pixel-worker.js';

const NOW = 1_800_000_000;

function stored(o: Partial<StoredEvent> = {}): StoredEvent {
  return {
    integration: 'growth/acme',
    providerType: 'invoice.paid',
    occurredAt: new Date((NOW - 60) * 1000),
    amountMinor: 2000,
    currency: 'USD',
    customerId: 'cus_1',
    customerEmail: 'a@example.com',
    account: null,
    attribution: {},
    details: { invoice: 'in_1', billingReason: 'subscription_cycle' },
    ...o,
  };
}

const send = (e: StoredEvent, names?: Record<string, string>) => {
  const m = mapEvent(e, { now: NOW, names });
  if (m.kind !== 'send') throw new Error(`expected send, got ${JSON.stringify(m)}`);
  return m;
};

describe('mapEvent', () => {
  it('derives event ids from Stripe object ids (providers.md §3.6)', () => {
    expect(send(stored()).event.event_id).toBe('in_1');
    expect(
      send(
        stored({
          providerType: 'checkout.session.completed',
          details: { checkoutSession: 'cs_1', paymentStatus: 'paid', mode: 'payment' },
        }),
      ).event.event_id,
    ).toBe('cs_1');
    expect(
      send(stored({ providerType: 'invoice.payment_failed', details: { invoice: 'in_2', attemptCount: 3 } }))
        .event.event_id,
    ).toBe('in_2:payment_failed:3');
    expect(
      send(stored({ providerType: 'customer.subscription.deleted', details: { subscription: 'sub_1' } }))
        .event.event_id,
    ).toBe('sub_1:deleted');
  });

  it('gives a subscription checkout and its first invoice the same event id and marks both as shared', () => {
    const checkout = send(
      stored({
        providerType: 'checkout.session.completed',
        details: { checkoutSession: 'cs_9', paymentStatus: 'paid', mode: 'subscription', invoice: 'in_9' },
      }),
    );
    const first = send(stored({ details: { invoice: 'in_9', billingReason: 'subscription_create' } }));
    const renewal = send(stored({ details: { invoice: 'in_10', billingReason: 'subscription_cycle' } }));
    expect(checkout.event.event_id).toBe('in_9');
    expect(checkout.sharedPurchaseId).toBe('in_9');
    expect(first.sharedPurchaseId).toBe('in_9');
    expect(renewal.sharedPurchaseId).toBeUndefined();
  });

  it('uses website only with a user agent and a source URL, and never for renewals', () => {
    const attribution = { client_user_agent: 'Mozilla/5.0', event_source_url: 'https://shop.example.com/' };
    const sub = stored({ providerType: 'customer.subscription.created', details: { subscription: 'sub_1' } });
    expect(send({ ...sub, attribution }).event.action_source).toBe('website');
    expect(send({ ...sub, attribution: { client_user_agent: 'Mozilla/5.0' } }).event.action_source).toBe(
      'system_generated',
    );
    expect(send(stored({ attribution })).event.action_source).toBe('system_generated');
  });

  it('converts minor units with Stripe exponents', () => {
    expect(send(stored({ amountMinor: 9800, currency: 'JPY' })).event.custom_data?.value).toBe(9800);
    expect(send(stored({ amountMinor: 1505, currency: 'KWD' })).event.custom_data?.value).toBe(1.505);
    expect(send(stored({ amountMinor: 100, currency: 'ISK' })).event.custom_data?.value).toBe(1);
  });

  it('applies event name overrides without changing event ids', () => {
    const m = send(stored(), { invoice_paid: 'Renewal' });
    expect(m.event.event_name).toBe('Renewal');
    expect(m.event.event_id).toBe('in_1');
  });

  it('refuses what Meta would refuse: too old, no amount, unknown types', () => {
    expect(mapEvent(stored({ occurredAt: new Date((NOW - 8 * 86400) * 1000) }), { now: NOW })).toMatchObject({
      kind: 'dead',
      reason: 'too_old',
    });
    expect(mapEvent(stored({ amountMinor: null, currency: null }), { now: NOW })).toMatchObject({
      kind: 'skip',
      reason: 'zero_amount',
    });
    expect(mapEvent(stored({ providerType: 'charge.succeeded' }), { now: NOW })).toMatchObject({
      kind: 'skip',
    });
    // A future time (clock skew) is sent as now.
    expect(send(stored({ occurredAt: new Date((NOW + 30) * 1000) })).event.event_time).toBe(NOW);
  });

  it('hashes names and addresses exactly as one buildUserData call would, memoised or not', () => {
    const details = {
      invoice: 'in_1',
      customerName: 'Zoë  van der Berg',
      customerPhone: '020 7946 0958',
      customerAddress: { city: 'London', state: 'Greater London', postal_code: 'SW1A 1AA', country: 'GB' },
    };
    const expected = buildUserData({
      em: 'a@example.com',
      ph: '020 7946 0958',
      fn: 'Zoë',
      ln: 'Berg',
      ct: 'London',
      st: 'Greater London',
      zp: 'SW1A 1AA',
      country: 'GB',
      external_id: 'cus_1',
    }).userData;
    for (let i = 0; i < 2; i++) expect(send(stored({ details })).event.user_data).toEqual(expected);
  });

  it('makes only hashes Meta accepts, so the forwarder may skip re-checking them (trustHashes)', () => {
    // Customers as Stripe holds them: every spelling the normalisers handle, and values they reject.
    const people = [
      { name: 'Zoë  van der Berg', phone: '020 7946 0958', email: ' Zoe@Example.co.uk ', country: 'GB' },
      {
        name: "D'Arcy O'Neil",
        phone: '+1 (650) 555-1212 x12',
        email: 'josé@bücher.de',
        country: 'United States',
      },
      { name: '정 민', phone: '0044 20 7946 0958', email: 'not-an-email', country: 'KOR' },
      { name: '   ', phone: '555', email: sha('a@example.com').toUpperCase(), country: 'Narnia' },
      { name: 'Madonna', phone: '+39 06 1234 5678', email: 'M@X.IT', country: 'italy' },
    ];
    const attributions: Record<string, string>[] = [
      {},
      { client_ip: '203.0.113.7', client_user_agent: 'Mozilla/5.0', fbc: 'fb.1.1.IwAR', fbp: 'fb.1.2.3' },
      { client_ip: '999.1.1.1', client_user_agent: ' ', event_source_url: 'https://shop.example.com/é' },
      { client_ip: '2001:db8::1', event_source_url: 'ftp://example.com/' },
    ];
    let checked = 0;
    for (const [i, p] of people.entries()) {
      for (const attribution of attributions) {
        const mapped = mapEvent(
          stored({
            customerEmail: p.email,
            attribution,
            details: {
              invoice: `in_${i}`,
              billingReason: 'subscription_create',
              customerName: p.name,
              customerPhone: p.phone,
              customerAddress: {
                city: 'South San Francisco',
                state: 'california',
                postal_code: '94035-1234',
                country: p.country,
              },
            },
          }),
          { now: NOW },
        );
        if (mapped.kind !== 'send') continue;
        const strict = validateServerEvent(mapped.event, 0, NOW);
        expect(validateServerEvent(mapped.event, 0, NOW, { trustHashes: true })).toEqual(strict);
        expect(strict.filter((issue) => issue.subcode === SUBCODE_PARAMETER_NOT_HASHED)).toEqual([]);
        checked++;
      }
    }
    expect(checked).toBe(people.length * attributions.length);
  });

  it('wants the Stripe customer only when the event lacks e-mail or click ids', () => {
    const full = { fbc: 'x', fbp: 'y', client_ip: '1.2.3.4', client_user_agent: 'z' };
    expect(wantsCustomer(stored({ attribution: full }))).toBe(false);
    expect(wantsCustomer(stored())).toBe(true);
    expect(wantsCustomer(stored({ attribution: full, customerEmail: null }))).toBe(true);
    expect(wantsCustomer(stored({ customerId: null }))).toBe(false);
  });
});

describe('jittered backoff', () => {
  it('stays within [½, 1] of the exponential step and under the cap', () => {
    for (let n = 1; n <= 12; n++) {
      const step = Math.min(60_000, 1000 * 2 ** (n - 1));
      for (let i = 0; i < 50; i++) {
        const d = jittered(1000, n, 60_000);
        expect(d).toBeGreaterThanOrEqual(step / 2);
        expect(d).toBeLessThanOrEqual(step);
      }
    }
  });
});

describe('parseRedriveFilter', () => {
  it('needs an explicit filter and rejects bad ids', () => {
    expect(parseRedriveFilter({})).toMatch(/name a pixel/);
    expect(parseRedriveFilter({ outboxIds: [1, 'x'] })).toMatch(/positive integers/);
    expect(parseRedriveFilter({ everything: true })).toMatch(/unknown field/);
    expect(parseRedriveFilter({ pixel: 'growth/p', eventIds: [3] })).toEqual({
      pixel: 'growth/p',
      eventIds: [3],
      outboxIds: undefined,
      reason: undefined,
    });
  });
});
