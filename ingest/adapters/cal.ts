import { createHmac, timingSafeEqual } from 'node:crypto';
import { pickAttribution, type NormalizedEvent } from '../../core/conversion.js';
import { integrationId, type CalIntegrationConfig } from '../../core/config/tally-config.js';
import { asArray, asObj, compact, isObj, num, str, type Obj } from './json-fields.js';
import { WebhookRejection, type Ignored } from './rejection.js';

const CONVERSIONS: Record<string, string> = {
  BOOKING_CREATED: 'booking_created',
  BOOKING_CANCELLED: 'booking_cancelled',
};
/** Stored and linked to the booking it replaces (Cal.com sends no cancel for the old uid). */
const STORED_ONLY = new Set(['BOOKING_RESCHEDULED']);

/**
 * `X-Cal-Signature-256` is the lowercase hex HMAC-SHA256 of the exact body, keyed with the secret.
 * Any configured secret may match (rotation). Compared in constant time.
 */
export function verifyCalSignature(raw: Buffer, header: unknown, secrets: string[]): void {
  if (typeof header !== 'string' || header === '') {
    throw new WebhookRejection(401, 'missing_signature', 'The X-Cal-Signature-256 header is missing.');
  }
  if (header === 'no-secret-provided') {
    throw new WebhookRejection(
      401,
      'missing_signature',
      'Cal.com sent no signature: paste the secret from the CalIntegration into the webhook\'s "Secret" field.',
    );
  }
  if (!/^[0-9a-f]{64}$/i.test(header)) {
    throw new WebhookRejection(401, 'malformed_signature', 'X-Cal-Signature-256 is not a hex SHA-256 HMAC.');
  }
  const given = Buffer.from(header.toLowerCase(), 'hex');
  for (const secret of secrets) {
    const expected = createHmac('sha256', secret).update(raw).digest();
    if (timingSafeEqual(expected, given)) return;
  }
  throw new WebhookRejection(401, 'invalid_signature', 'The signature does not match the webhook secret.');
}

export interface CalEnvelope {
  triggerEvent: string;
  createdAt?: string;
  payload: Obj;
}

export function parseCalEnvelope(raw: string): CalEnvelope {
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw new WebhookRejection(400, 'invalid_json', 'The body is signed correctly but is not valid JSON.');
  }
  const e = asObj(body);
  if (typeof e.triggerEvent !== 'string' || (e.triggerEvent !== 'PING' && !isObj(e.payload))) {
    throw new WebhookRejection(
      400,
      'invalid_payload',
      'The body has no triggerEvent and payload: set the webhook\'s Payload Template to "Default" in Cal.com.',
    );
  }
  return { triggerEvent: e.triggerEvent, createdAt: str(e.createdAt), payload: asObj(e.payload) };
}

export function normaliseCalEvent(
  envelope: CalEnvelope,
  raw: string,
  integration: CalIntegrationConfig,
): NormalizedEvent | Ignored {
  const trigger = envelope.triggerEvent;
  const conversionType = CONVERSIONS[trigger];
  if (!conversionType && !STORED_ONLY.has(trigger)) return { kind: 'ignored', reason: 'untracked_trigger' };
  if (conversionType && !(integration.bookingEvents as string[]).includes(conversionType)) {
    return { kind: 'ignored', reason: 'type_not_tracked' };
  }
  const p = envelope.payload;
  const uid = str(p.uid);
  if (!uid) {
    throw new WebhookRejection(
      400,
      'invalid_payload',
      `${trigger} has no payload.uid to identify the booking.`,
    );
  }
  const seat = str(p.attendeeSeatId);
  const booker = asObj(asArray(p.attendees)[0]);
  const organizer = asObj(p.organizer);
  const eventType = asObj(p.eventType);
  const occurredAt = parseInstant(envelope.createdAt) ?? new Date();

  return {
    source: 'cal',
    integration: integrationId(integration),
    idempotencyKey: [trigger, uid, seat].filter(Boolean).join(':'),
    providerType: trigger,
    conversionType,
    occurredAt,
    customerEmail: str(booker.email),
    attribution: pickAttribution(
      asObj(p.metadata),
      fieldValues(p.responses),
      fieldValues(p.userFieldsResponses),
      asObj(p.tracking),
    ),
    details: compact({
      uid,
      bookingId: num(p.bookingId),
      attendeeSeatId: seat,
      rescheduledFrom: str(p.rescheduleUid),
      eventType: compact({
        id: num(p.eventTypeId),
        slug: str(p.type),
        title: str(p.title) ?? str(eventType.title),
      }),
      startTime: parseInstant(str(p.startTime))?.toISOString(),
      endTime: parseInstant(str(p.endTime))?.toISOString(),
      attendee: compact({ email: str(booker.email), name: str(booker.name), timeZone: str(booker.timeZone) }),
      organizer: compact({
        id: num(organizer.id),
        name: str(organizer.name),
        email: str(organizer.email),
        username: str(organizer.username),
        timeZone: str(organizer.timeZone),
      }),
      status: str(p.status),
      cancellationReason: str(p.cancellationReason),
      metadata: isObj(p.metadata) ? p.metadata : undefined,
    }),
    payload: raw,
    destinations: [],
  };
}

/** Booking-form answers ({field: {value}}) as plain key → value, for hidden tracking fields (utm_*, anonymous_id). */
function fieldValues(responses: unknown): Obj {
  const out: Obj = {};
  for (const [key, answer] of Object.entries(asObj(responses))) {
    const value = isObj(answer) ? answer.value : answer;
    if (typeof value === 'string') out[key] = value;
  }
  return out;
}

/** Cal.com writes instants as `2025-04-15T15:00:00Z` in creates and `…+00:00` in cancels. */
function parseInstant(value: string | undefined): Date | undefined {
  if (!value) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d;
}
