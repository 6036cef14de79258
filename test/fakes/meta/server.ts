import { randomBytes } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import {
  SUBCODE_EVENT_TOO_OLD,
  validateEventsRequest,
  type ServerEvent,
  type ValidationIssue,
} from '../../../forwarder/meta/event.js';

/**
 * A local Conversions API: `POST /{version}/{pixel_id}/events?access_token=…` with Meta's validation,
 * Meta's error shapes and faults the tests can drive per pixel. Events that pass are recorded with their
 * pixel, event_id and event_name; a repeat of event_id + event_name within 48 h is recorded as a
 * duplicate, as Meta deduplicates it.
 */

export type FaultClass =
  'transient' | 'rate_limited' | 'token_invalid' | 'invalid_event' | 'policy' | 'network';

export interface FaultOptions {
  /** Graph error code to answer with, e.g. 4, 17, 32 or 613 for rate_limited; a typical one by default. */
  code?: number;
}

export interface DeliveredEvent {
  pixelId: string;
  eventId: string | undefined;
  eventName: string;
  eventTime: number;
  /** Server clock (ms) when the event was accepted. */
  receivedAt: number;
  testEventCode: string | undefined;
  event: ServerEvent;
}

export interface PixelCounters {
  /** Requests that reached this pixel's endpoint. */
  requests: number;
  /** Requests answered 200. */
  accepted: number;
  /** Requests answered with a Graph error by validation or authentication. */
  rejected: number;
  /** Requests answered by an injected fault (error, dropped connection or hang). */
  faults: number;
  /** Events in accepted requests, duplicates included (Meta's events_received). */
  eventsReceived: number;
  /** Events Meta would drop as duplicates of an event_id + event_name seen within 48 h. */
  duplicates: number;
}

export interface ResponseRecord {
  pixelId: string;
  /** HTTP status, or what happened instead of an answer. */
  outcome: number | 'network' | 'hang';
  code?: number;
  subcode?: number;
  events: number;
}

const DEDUPE_WINDOW_MS = 48 * 60 * 60 * 1000;

export class FakePixel {
  readonly tokens = new Set<string>();
  readonly expiredTokens = new Set<string>();
  /** Delay before every answer to this pixel. */
  latencyMs = 0;
  /** Never answer requests to this pixel (the connection stays open until the client gives up). */
  hang = false;
  readonly counters: PixelCounters = {
    requests: 0,
    accepted: 0,
    rejected: 0,
    faults: 0,
    eventsReceived: 0,
    duplicates: 0,
  };
  /** First deliveries, in order of acceptance. */
  readonly delivered: DeliveredEvent[] = [];
  /** Later deliveries of an event_id + event_name already delivered within 48 h. */
  readonly duplicates: DeliveredEvent[] = [];
  readonly faults: { cls: FaultClass; remaining: number; options: FaultOptions }[] = [];
  private readonly firstSeen = new Map<string, number>();

  constructor(readonly id: string) {}

  /** The next `count` requests to this pixel are answered with a fault of class `cls`. */
  failNext(count: number, cls: FaultClass, options: FaultOptions = {}): this {
    this.faults.push({ cls, remaining: count, options });
    return this;
  }

  /** Event ids delivered (first deliveries only), for exactly-once assertions. */
  deliveredIds(): (string | undefined)[] {
    return this.delivered.map((e) => e.eventId);
  }

  /** @internal */
  takeFault(): { cls: FaultClass; options: FaultOptions } | undefined {
    const next = this.faults[0];
    if (next === undefined) return undefined;
    next.remaining -= 1;
    if (next.remaining <= 0) this.faults.shift();
    return next;
  }

  /** @internal */
  record(event: ServerEvent, testEventCode: string | undefined, now: number): void {
    const delivered: DeliveredEvent = {
      pixelId: this.id,
      eventId: event.event_id,
      eventName: event.event_name,
      eventTime: event.event_time,
      receivedAt: now,
      testEventCode,
      event,
    };
    this.counters.eventsReceived += 1;
    if (event.event_id === undefined) {
      this.delivered.push(delivered);
      return;
    }
    const key = `${event.event_name}\u0000${event.event_id}`;
    const first = this.firstSeen.get(key);
    if (first !== undefined && now - first < DEDUPE_WINDOW_MS) {
      this.counters.duplicates += 1;
      this.duplicates.push(delivered);
    } else {
      this.firstSeen.set(key, now);
      this.delivered.push(delivered);
    }
  }
}

export class FakeMetaState {
  readonly pixels = new Map<string, FakePixel>();
  /** Every answer (or non-answer), in order. */
  readonly responses: ResponseRecord[] = [];
  /** Server clock in ms: event age checks and the 48 h dedupe window use it. Tests may replace it. */
  now: () => number = () => Date.now();

  /** Registers a pixel that accepts the given access tokens. */
  addPixel(id: string, options: { tokens: readonly string[] }): FakePixel {
    const pixel = new FakePixel(id);
    for (const token of options.tokens) pixel.tokens.add(token);
    this.pixels.set(id, pixel);
    return pixel;
  }

  pixel(id: string): FakePixel {
    const pixel = this.pixels.get(id);
    if (pixel === undefined) throw new Error(`fake Meta: no pixel ${id}`);
    return pixel;
  }

  /** Makes a token answer 190/463 ("Session has expired") everywhere. */
  expireToken(token: string): void {
    for (const pixel of this.pixels.values()) {
      if (pixel.tokens.delete(token)) pixel.expiredTokens.add(token);
    }
  }

  /** @internal */
  tokenStatus(token: string, pixel: FakePixel | undefined): 'valid' | 'expired' | 'unknown' | 'no_access' {
    if (pixel?.tokens.has(token)) return 'valid';
    const everywhere = [...this.pixels.values()];
    if (everywhere.some((p) => p.expiredTokens.has(token))) return 'expired';
    if (everywhere.some((p) => p.tokens.has(token))) return 'no_access';
    return 'unknown';
  }
}

interface GraphErrorBody {
  message: string;
  type: string;
  code: number;
  error_subcode?: number;
  is_transient?: boolean;
  error_user_title?: string;
  error_user_msg?: string;
  fbtrace_id: string;
}

const fbtraceId = () => `A${randomBytes(16).toString('base64url').slice(0, 22)}`;

function graphError(
  status: number,
  error: Omit<GraphErrorBody, 'fbtrace_id' | 'type'> & { type?: string },
): { status: number; body: { error: GraphErrorBody } } {
  return { status, body: { error: { type: 'OAuthException', ...error, fbtrace_id: fbtraceId() } } };
}

/** The error Meta answers for an injected fault of each class. */
function faultResponse(cls: Exclude<FaultClass, 'network'>, options: FaultOptions) {
  switch (cls) {
    case 'transient':
      return options.code === 1
        ? graphError(500, { message: 'An unknown error occurred', code: 1, is_transient: true })
        : graphError(500, {
            message: 'An unexpected error has occurred. Please retry your request later.',
            code: options.code ?? 2,
            is_transient: true,
          });
    case 'rate_limited': {
      const code = options.code ?? 17;
      const messages: Record<number, string> = {
        4: '(#4) Application request limit reached',
        17: '(#17) User request limit reached',
        32: '(#32) Page request limit reached',
        613: '(#613) Calls to this api have exceeded the rate limit.',
      };
      return graphError(400, {
        message: messages[code] ?? `(#${code}) Rate limit reached`,
        code,
        is_transient: true,
      });
    }
    case 'token_invalid':
      return graphError(400, {
        message: 'Error validating access token: Session has expired.',
        code: options.code ?? 190,
        error_subcode: 463,
        is_transient: false,
      });
    case 'invalid_event':
      return graphError(400, {
        message: 'Invalid parameter',
        code: options.code ?? 100,
        error_subcode: SUBCODE_EVENT_TOO_OLD,
        is_transient: false,
        error_user_title: 'Event Timestamp Too Old',
        error_user_msg:
          'Event 0: The timestamp for this event is too far in the past. Events need to be sent from your server within 7 days of when they occurred.',
      });
    case 'policy':
      return graphError(400, {
        message: '(#368) The action attempted has been deemed abusive or is otherwise disallowed',
        code: options.code ?? 368,
        is_transient: false,
      });
  }
}

function validationError(issue: ValidationIssue) {
  if (issue.index === null) {
    return graphError(400, {
      message: `(#100) ${issue.message}`,
      code: 100,
      is_transient: false,
      error_user_title: issue.title,
      error_user_msg: issue.message,
    });
  }
  return graphError(400, {
    message: 'Invalid parameter',
    code: 100,
    ...(issue.subcode !== undefined ? { error_subcode: issue.subcode } : {}),
    is_transient: false,
    error_user_title: issue.title,
    error_user_msg: `Event ${issue.index} (${issue.field}): ${issue.message}`,
  });
}

export interface FakeMeta {
  url: string;
  close: () => Promise<void>;
  state: FakeMetaState;
}

/** Starts the fake on 127.0.0.1 with an ephemeral port. */
export async function startFakeMeta(): Promise<FakeMeta> {
  const state = new FakeMetaState();
  // Requests held open by latency or "hang", released when the server closes.
  const waiting = new Set<() => void>();
  let closing = false;

  const app = Fastify({ logger: false, forceCloseConnections: true, bodyLimit: 10 * 1024 * 1024 });
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string' },
    (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
  );
  app.setErrorHandler((error: { statusCode?: number; message: string }, _request, reply) => {
    const status = error.statusCode ?? 500;
    const answer =
      status >= 500
        ? graphError(500, { message: 'An unknown error occurred', code: 1, is_transient: true })
        : graphError(status, {
            message: `(#100) The request body could not be read: ${error.message}`,
            code: 100,
            is_transient: false,
          });
    void reply.status(answer.status).send(answer.body);
  });
  app.setNotFoundHandler((request, reply) => {
    const answer = graphError(400, {
      message: `Unknown path components: ${request.url.split('?')[0]}`,
      code: 2500,
    });
    void reply.status(answer.status).send(answer.body);
  });

  const wait = (ms: number | undefined) =>
    new Promise<void>((resolve) => {
      if (closing) return resolve();
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      function done() {
        if (timer !== undefined) clearTimeout(timer);
        waiting.delete(done);
        resolve();
      }
      waiting.add(done);
    });

  app.post(
    '/:version/:pixelId/events',
    async (
      request: FastifyRequest<{
        Params: { version: string; pixelId: string };
        Querystring: Record<string, string>;
      }>,
      reply: FastifyReply,
    ) => {
      const { version, pixelId } = request.params;
      const pixel = state.pixels.get(pixelId);
      const body: unknown = request.body ?? {};
      const events = countEvents(body);
      const respond = (
        answer: { status: number; body: unknown },
        counter: 'accepted' | 'rejected' | 'faults',
      ) => {
        if (pixel) pixel.counters[counter] += 1;
        const error = (answer.body as { error?: { code?: number; error_subcode?: number } }).error;
        state.responses.push({
          pixelId,
          outcome: answer.status,
          ...(error?.code !== undefined ? { code: error.code } : {}),
          ...(error?.error_subcode !== undefined ? { subcode: error.error_subcode } : {}),
          events,
        });
        return reply.status(answer.status).send(answer.body);
      };

      if (pixel) pixel.counters.requests += 1;
      if (pixel && pixel.latencyMs > 0) await wait(pixel.latencyMs);
      if (pixel?.hang) {
        pixel.counters.faults += 1;
        state.responses.push({ pixelId, outcome: 'hang', events });
        await wait(undefined);
        reply.hijack();
        request.raw.socket.destroy();
        return;
      }
      if (closing) {
        reply.hijack();
        request.raw.socket.destroy();
        return;
      }

      const fault = pixel?.takeFault();
      if (fault?.cls === 'network') {
        pixel!.counters.faults += 1;
        state.responses.push({ pixelId, outcome: 'network', events });
        reply.hijack();
        request.raw.socket.destroy();
        return;
      }
      if (fault) return respond(faultResponse(fault.cls, fault.options), 'faults');

      if (!/^v\d+\.\d+$/.test(version)) {
        return respond(
          graphError(400, { message: `Unknown path components: /${version}/${pixelId}/events`, code: 2500 }),
          'rejected',
        );
      }

      const bodyToken =
        typeof body === 'object' && body !== null
          ? (body as { access_token?: unknown }).access_token
          : undefined;
      const token = request.query.access_token ?? (typeof bodyToken === 'string' ? bodyToken : undefined);
      if (!token) {
        return respond(
          graphError(400, { message: 'An access token is required to request this resource.', code: 104 }),
          'rejected',
        );
      }
      switch (state.tokenStatus(token, pixel)) {
        case 'unknown':
          return respond(
            graphError(400, { message: 'Invalid OAuth access token - Cannot parse access token', code: 190 }),
            'rejected',
          );
        case 'expired':
          return respond(
            graphError(400, {
              message: 'Error validating access token: Session has expired.',
              code: 190,
              error_subcode: 463,
            }),
            'rejected',
          );
        case 'no_access':
          return respond(unsupportedPost(pixelId), 'rejected');
        case 'valid':
          break;
      }
      if (!pixel) return respond(unsupportedPost(pixelId), 'rejected');

      const payload = graphParams(body);
      const nowMs = state.now();
      const result = validateEventsRequest(payload, { now: Math.floor(nowMs / 1000) });
      if (!result.ok) return respond(validationError(result.issues[0]!), 'rejected');

      const { data, test_event_code: testEventCode } = result.request;
      for (const event of data) pixel.record(event, testEventCode, nowMs);
      return respond(
        { status: 200, body: { events_received: data.length, messages: [], fbtrace_id: fbtraceId() } },
        'accepted',
      );
    },
  );

  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('fake Meta: no TCP address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    state,
    close: async () => {
      closing = true;
      for (const release of [...waiting]) release();
      await app.close();
    },
  };
}

function unsupportedPost(pixelId: string) {
  return graphError(400, {
    message: `Unsupported post request. Object with ID '${pixelId}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api`,
    code: 100,
    error_subcode: 33,
    type: 'GraphMethodException',
  });
}

/** The Graph API reads parameters from the query or the body; `data` may be a JSON string (form posts). */
function graphParams(body: unknown): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return body;
  const params: Record<string, unknown> = { ...(body as Record<string, unknown>) };
  delete params.access_token;
  delete params.appsecret_proof;
  if (typeof params.data === 'string') {
    try {
      params.data = JSON.parse(params.data);
    } catch {
      // Left as a string: validation reports that data is not an array.
    }
  }
  return params;
}

function countEvents(body: unknown): number {
  const data = (body as { data?: unknown } | null)?.data;
  return Array.isArray(data) ? data.length : 0;
}
