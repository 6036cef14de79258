import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  MAX_EVENT_AGE_SECONDS,
  SUBCODE_EVENT_TOO_OLD,
  SUBCODE_INSUFFICIENT_CUSTOMER_INFORMATION,
  SUBCODE_PARAMETER_NOT_HASHED,
  validateEventsRequest,
  validateServerEvent,
  type ServerEvent,
} from './event.js';

const now = 1_772_000_000;
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function purchase(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    event_name: 'Purchase',
    event_time: now - 60,
    event_id: 'cs_test_a1',
    action_source: 'system_generated',
    user_data: { em: [sha('person@example.com')], external_id: [sha('cus_1')] },
    custom_data: { value: 49.99, currency: 'USD' },
    ...overrides,
  };
}

const issuesOf = (body: unknown) => {
  const result = validateEventsRequest(body, { now });
  return result.ok ? [] : result.issues;
};

describe('validateEventsRequest', () => {
  it('accepts a well-formed batch and returns it typed', () => {
    const website: ServerEvent = {
      event_name: 'Subscribe',
      event_time: now,
      event_id: 'sub_1',
      action_source: 'website',
      event_source_url: 'https://shop.example.com/thanks',
      user_data: { client_user_agent: 'Mozilla/5.0', client_ip_address: '2001:db8::1', fbc: 'fb.1.1.AbC' },
    };
    const result = validateEventsRequest(
      { data: [purchase(), website], test_event_code: 'TEST123', partner_agent: 'tally' },
      { now },
    );
    expect(result.ok).toBe(true);
    expect(result.ok && result.request.data.map((e) => e.event_id)).toEqual(['cs_test_a1', 'sub_1']);
  });

  it('rejects request-level mistakes with index null', () => {
    for (const body of [
      null,
      [],
      'data',
      {},
      { data: {} },
      { data: [] },
      { data: [purchase()], partner_agent: 1 },
    ]) {
      const issues = issuesOf(body);
      expect(issues.length, JSON.stringify(body)).toBeGreaterThan(0);
      expect(issues.every((i) => i.index === null)).toBe(true);
    }
  });

  it('allows 1000 events and rejects 1001', () => {
    const events = (n: number) => Array.from({ length: n }, (_, i) => purchase({ event_id: `e${i}` }));
    expect(issuesOf({ data: events(1000) })).toEqual([]);
    expect(issuesOf({ data: events(1001) })).toEqual([
      expect.objectContaining({ index: null, field: 'data', title: 'Too many events' }),
    ]);
  });

  it('checks event_name: required, at most 50 characters', () => {
    expect(issuesOf({ data: [purchase({ event_name: 'X'.repeat(50), custom_data: undefined })] })).toEqual(
      [],
    );
    expect(issuesOf({ data: [purchase({ event_name: 'X'.repeat(51) })] })[0]).toMatchObject({
      index: 0,
      field: 'data[0].event_name',
    });
    expect(issuesOf({ data: [purchase({ event_name: '' })] })[0]?.field).toBe('data[0].event_name');
  });

  it('checks event_time: Unix seconds, not in the future, at most 7 days old (subcode 2804003)', () => {
    expect(issuesOf({ data: [purchase({ event_time: now - MAX_EVENT_AGE_SECONDS })] })).toEqual([]);
    expect(issuesOf({ data: [purchase({ event_time: now - MAX_EVENT_AGE_SECONDS - 1 })] })).toEqual([
      expect.objectContaining({ index: 0, field: 'data[0].event_time', subcode: SUBCODE_EVENT_TOO_OLD }),
    ]);
    const future = issuesOf({ data: [purchase({ event_time: now + 1 })] });
    expect(future).toEqual([
      expect.objectContaining({ field: 'data[0].event_time', title: 'Event Timestamp In Future' }),
    ]);
    expect(issuesOf({ data: [purchase({ event_time: now * 1000 })] })[0]?.message).toMatch(/milliseconds/);
    for (const bad of ['1772000000', 1772000000.5, -1, undefined]) {
      expect(issuesOf({ data: [purchase({ event_time: bad })] })[0]?.field).toBe('data[0].event_time');
    }
  });

  it('checks event_id and action_source', () => {
    expect(issuesOf({ data: [purchase({ event_id: '' })] })[0]?.field).toBe('data[0].event_id');
    expect(issuesOf({ data: [purchase({ event_id: 12 })] })[0]?.field).toBe('data[0].event_id');
    expect(issuesOf({ data: [purchase({ action_source: 'web' })] })[0]?.field).toBe('data[0].action_source');
    expect(issuesOf({ data: [purchase({ action_source: undefined })] })[0]?.field).toBe(
      'data[0].action_source',
    );
  });

  it('requires client_user_agent and event_source_url for website events', () => {
    const issues = issuesOf({ data: [purchase({ action_source: 'website' })] });
    expect(issues.map((i) => i.field).sort()).toEqual([
      'data[0].event_source_url',
      'data[0].user_data.client_user_agent',
    ]);
    expect(
      issuesOf({
        data: [
          purchase({
            action_source: 'website',
            event_source_url: 'ftp://example.com',
            user_data: { em: [sha('a@b.co')], client_user_agent: 'UA' },
          }),
        ],
      }).map((i) => i.field),
    ).toEqual(['data[0].event_source_url']);
  });

  it('requires hashed customer information to be 64 lowercase hex characters (subcode 2804016)', () => {
    for (const em of [
      'person@example.com',
      [sha('x').toUpperCase()],
      [sha('x'), 'plain'],
      sha('x').slice(1),
    ]) {
      expect(issuesOf({ data: [purchase({ user_data: { em, external_id: 'cus_1' } })] })).toEqual([
        expect.objectContaining({ field: 'data[0].user_data.em', subcode: SUBCODE_PARAMETER_NOT_HASHED }),
      ]);
    }
    // A single hashed string (not an array) is accepted, as by Meta; external_id may be unhashed.
    expect(issuesOf({ data: [purchase({ user_data: { ct: sha('x'), external_id: 'cus_1' } })] })).toEqual([]);
  });

  it('rejects unknown user_data keys, bad IPs and empty plain values', () => {
    const fields = issuesOf({
      data: [
        purchase({ user_data: { email: 'a', client_ip_address: '999.1.1.1', fbp: ' ', em: [sha('a')] } }),
      ],
    }).map((i) => i.field);
    expect(fields).toEqual([
      'data[0].user_data.email',
      'data[0].user_data.client_ip_address',
      'data[0].user_data.fbp',
    ]);
  });

  it('rejects events without enough customer information (subcode 2804050)', () => {
    for (const user_data of [
      {},
      { client_user_agent: 'UA' },
      { ct: [sha('x')], country: [sha('us')], zp: [sha('94035')], client_user_agent: 'UA' },
      { db: [sha('19970216')], client_user_agent: 'UA' },
      { fn: [sha('mary')], ge: [sha('f')] },
    ]) {
      expect(issuesOf({ data: [purchase({ user_data })] }), JSON.stringify(user_data)).toEqual([
        expect.objectContaining({
          field: 'data[0].user_data',
          subcode: SUBCODE_INSUFFICIENT_CUSTOMER_INFORMATION,
        }),
      ]);
    }
    expect(issuesOf({ data: [purchase({ user_data: undefined })] })[0]?.subcode).toBe(
      SUBCODE_INSUFFICIENT_CUSTOMER_INFORMATION,
    );
    for (const user_data of [
      { client_ip_address: '203.0.113.7', client_user_agent: 'UA' },
      { fbp: 'fb.1.1.1' },
      { fn: [sha('mary')], ln: [sha('smith')], ge: [sha('f')] },
    ]) {
      expect(issuesOf({ data: [purchase({ user_data })] }), JSON.stringify(user_data)).toEqual([]);
    }
  });

  it('requires value and an upper-case ISO 4217 currency for Purchase', () => {
    expect(issuesOf({ data: [purchase({ custom_data: undefined })] })[0]?.field).toBe('data[0].custom_data');
    expect(issuesOf({ data: [purchase({ custom_data: { value: 10 } })] })[0]?.field).toBe(
      'data[0].custom_data',
    );
    expect(issuesOf({ data: [purchase({ custom_data: { value: 10, currency: 'usd' } })] })[0]?.field).toBe(
      'data[0].custom_data.currency',
    );
    expect(issuesOf({ data: [purchase({ custom_data: { value: 10, currency: 'ABC' } })] })[0]?.field).toBe(
      'data[0].custom_data.currency',
    );
    expect(issuesOf({ data: [purchase({ custom_data: { value: '10', currency: 'EUR' } })] })[0]?.field).toBe(
      'data[0].custom_data.value',
    );
    expect(issuesOf({ data: [purchase({ custom_data: { value: 0, currency: 'JPY' } })] })).toEqual([]);
    // Other events need neither.
    expect(issuesOf({ data: [purchase({ event_name: 'PaymentFailed', custom_data: undefined })] })).toEqual(
      [],
    );
  });

  it('reports every bad event with its index, in order', () => {
    const data = [
      purchase(),
      purchase({ event_time: now - MAX_EVENT_AGE_SECONDS - 3600 }),
      purchase(),
      purchase({ action_source: 'carrier_pigeon' }),
    ];
    expect(issuesOf({ data }).map((i) => i.index)).toEqual([1, 3]);
  });

  it('rejects unknown event keys and malformed LDU options', () => {
    expect(issuesOf({ data: [purchase({ eventName: 'x' })] })[0]?.field).toBe('data[0].eventName');
    expect(issuesOf({ data: [purchase({ data_processing_options: ['GDPR'] })] })[0]?.field).toBe(
      'data[0].data_processing_options',
    );
    expect(
      issuesOf({
        data: [
          purchase({
            data_processing_options: ['LDU'],
            data_processing_options_country: 1,
            data_processing_options_state: 1000,
          }),
        ],
      }),
    ).toEqual([]);
  });
});

describe('validateServerEvent with trustHashes (the forwarder checking what buildUserData made)', () => {
  const check = (event: Record<string, unknown>, trustHashes?: boolean) =>
    validateServerEvent(event, 0, now, trustHashes === undefined ? {} : { trustHashes });

  it('leaves out only the check that hashed values are 64 lowercase hex characters', () => {
    const unhashed = purchase({ user_data: { em: ['person@example.com'], external_id: ['cus_1'] } });
    expect(check(unhashed)).toEqual([
      expect.objectContaining({ field: 'data[0].user_data.em', subcode: SUBCODE_PARAMETER_NOT_HASHED }),
    ]);
    expect(check(unhashed, true)).toEqual([]);
  });

  it('still checks everything that comes from outside', () => {
    const fields = check(
      purchase({
        event_id: ' ',
        action_source: 'website',
        event_source_url: 'ftp://example.com/',
        user_data: { em: [], ct: [7], client_ip_address: '999.1.1.1', fbc: ' ', email: 'x' },
        custom_data: { value: 1, currency: 'usd' },
      }),
      true,
    ).map((i) => i.field);
    expect(fields).toEqual([
      'data[0].event_id',
      'data[0].event_source_url',
      'data[0].user_data.em',
      'data[0].user_data.ct',
      'data[0].user_data.client_ip_address',
      'data[0].user_data.fbc',
      'data[0].user_data.email',
      'data[0].user_data.client_user_agent',
      'data[0].user_data',
      'data[0].custom_data.currency',
    ]);
  });
});
