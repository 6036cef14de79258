import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { booking, calEnvelope, cancellation, ping, reschedule, signCal } from '../../core/samples/cal.js';
import { CAL_SECRET, sample, startIngest, type IngestUnderTest } from './harness.js';

const ROUTE = '/webhooks/cal/growth/demo-calls';

describe('ingest: Cal.com webhooks', () => {
  let ingest: IngestUnderTest;
  beforeAll(async () => {
    ingest = await startIngest();
  });
  afterAll(() => ingest.close());

  const send = (body: string, signature?: string) =>
    ingest.post(ROUTE, body, signature === undefined ? {} : { 'x-cal-signature-256': signature });
  const deliver = (envelope: object, secret = CAL_SECRET) => {
    const body = JSON.stringify(envelope);
    return send(body, signCal(body, secret));
  };
  interface Row {
    idempotency_key: string;
    provider_type: string;
    conversion_type: string | null;
    customer_email: string | null;
    attribution: Record<string, string>;
    details: Record<string, unknown>;
  }
  async function rows(uid: string): Promise<Row[]> {
    const { rows } = await ingest.pool.query<Row>(
      `SELECT idempotency_key, provider_type, conversion_type, customer_email, attribution, details
         FROM events WHERE details->>'uid' = $1 ORDER BY id`,
      [uid],
    );
    return rows;
  }

  it('stores BOOKING_CREATED with the booking, attendee, event type, organizer and attribution', async () => {
    const b = booking();
    expect(await deliver(calEnvelope('BOOKING_CREATED', b))).toEqual({
      status: 200,
      body: { received: true },
    });
    const [row] = await rows(b.uid);
    expect(row).toMatchObject({
      idempotency_key: `BOOKING_CREATED:${b.uid}`,
      conversion_type: 'booking_created',
      customer_email: 'jenny.rosen@example.com',
      // metadata wins over hidden booking fields; both contribute.
      attribution: { anonymous_id: 'anon-7f3a', utm_source: 'meta', utm_campaign: 'winter-launch' },
      details: {
        uid: b.uid,
        bookingId: 1001,
        eventType: { id: 42, slug: 'demo-call', title: b.title },
        startTime: '2026-12-10T15:00:00.000Z',
        endTime: '2026-12-10T15:30:00.000Z',
        attendee: { email: 'jenny.rosen@example.com', name: 'Jenny Rosen', timeZone: 'America/New_York' },
        organizer: {
          id: 7,
          name: 'Alex Host',
          email: 'alex@acme.example',
          username: 'alex',
          timeZone: 'Europe/London',
        },
        status: 'ACCEPTED',
      },
    });
  });

  it('stores BOOKING_CANCELLED as its own conversion, with +00:00 instants parsed and hidden-field attribution', async () => {
    const b = booking();
    await deliver(calEnvelope('BOOKING_CREATED', b));
    expect((await deliver(calEnvelope('BOOKING_CANCELLED', cancellation(b)))).status).toBe(200);
    const [, cancelled] = await rows(b.uid);
    expect(cancelled).toMatchObject({
      conversion_type: 'booking_cancelled',
      attribution: { utm_campaign: 'winter-launch' },
      details: {
        startTime: '2026-12-10T15:00:00.000Z',
        status: 'CANCELLED',
        cancellationReason: 'Found another time',
      },
    });
  });

  it('stores BOOKING_RESCHEDULED linked to the booking it replaces', async () => {
    const original = booking();
    const moved = reschedule(original);
    expect((await deliver(calEnvelope('BOOKING_RESCHEDULED', moved))).body).toEqual({ received: true });
    expect(await rows(moved.uid)).toMatchObject([
      {
        provider_type: 'BOOKING_RESCHEDULED',
        conversion_type: null,
        details: { rescheduledFrom: original.uid },
      },
    ]);
  });

  it('answers PING 200 without storing, and ignores other triggers with a count', async () => {
    expect(await deliver(ping())).toEqual({ status: 200, body: { received: true, ignored: 'ping' } });
    const b = booking();
    expect(await deliver(calEnvelope('MEETING_ENDED', b))).toEqual({
      status: 200,
      body: { received: true, ignored: 'untracked_trigger' },
    });
    expect(await rows(b.uid)).toEqual([]);
    expect(
      sample(await ingest.metrics(), 'tally_ingest_webhooks_ignored_total', {
        source: 'cal',
        reason: 'ping',
      }),
    ).toBe(1);
  });

  it('stores a duplicate delivery once, and one event per seat of a seated booking', async () => {
    const b = booking();
    const envelope = calEnvelope('BOOKING_CREATED', b);
    expect((await deliver(envelope)).body).toEqual({ received: true });
    // Cal.com re-sends with a new createdAt; the key is trigger + uid.
    expect(
      (await deliver({ ...envelope, createdAt: new Date(Date.now() + 1000).toISOString() })).body,
    ).toEqual({
      received: true,
      duplicate: true,
    });
    const seated = booking({ attendeeSeatId: 'seat-1' });
    await deliver(calEnvelope('BOOKING_CREATED', seated));
    await deliver(calEnvelope('BOOKING_CREATED', { ...seated, attendeeSeatId: 'seat-2' }));
    expect((await rows(b.uid)).length).toBe(1);
    expect((await rows(seated.uid)).map((r) => r.idempotency_key)).toEqual([
      `BOOKING_CREATED:${seated.uid}:seat-1`,
      `BOOKING_CREATED:${seated.uid}:seat-2`,
    ]);
  });

  it.each([
    [
      'a missing signature',
      () => send(JSON.stringify(calEnvelope('BOOKING_CREATED', booking()))),
      401,
      'missing_signature',
    ],
    ['Cal.com’s "no-secret-provided"', () => send('{}', 'no-secret-provided'), 401, 'missing_signature'],
    ['a signature that is not hex', () => send('{}', 'sha256=abc'), 401, 'malformed_signature'],
    [
      'a wrong secret',
      () => deliver(calEnvelope('BOOKING_CREATED', booking()), 'another-secret-0123456789'),
      401,
      'invalid_signature',
    ],
    [
      'a tampered body',
      () => {
        const body = JSON.stringify(calEnvelope('BOOKING_CREATED', booking()));
        return send(body.replace('Jenny', 'Jenni'), signCal(body, CAL_SECRET));
      },
      401,
      'invalid_signature',
    ],
    [
      'broken JSON after a valid signature',
      () => send('{"triggerEvent":', signCal('{"triggerEvent":', CAL_SECRET)),
      400,
      'invalid_json',
    ],
    ['a custom payload template', () => deliver({ name: 'Jenny', when: 'tomorrow' }), 400, 'invalid_payload'],
    [
      'a booking without a uid',
      () => deliver(calEnvelope('BOOKING_CREATED', booking({ uid: undefined }))),
      400,
      'invalid_payload',
    ],
  ])('rejects %s', async (_what, request, status, reason) => {
    const res = await request();
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(reason);
    expect(JSON.stringify(res.body)).not.toContain(CAL_SECRET);
  });
});
