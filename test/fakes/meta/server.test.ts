import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { classifyGraphResponse, classifyNetworkError } from '../../../forwarder/meta/errors.js';
import type { EventsRequest, ServerEvent } from '../../../forwarder/meta/event.js';
import { buildUserData } from '../../../forwarder/meta/user-data.js';
import { startFakeMeta, type FakeMeta, type FakePixel } from './server.js';

const TOKEN = 'EAAtestTOKENforPIXEL1';
const OTHER_TOKEN = 'EAAtestTOKENforPIXEL2';

let meta: FakeMeta;
let pixel: FakePixel;
let pixelId: string;
let counter = 0;

beforeAll(async () => {
  meta = await startFakeMeta();
});
afterAll(async () => {
  await meta.close();
});
beforeEach(() => {
  // A fresh pixel per test keeps records and faults apart.
  counter += 1;
  pixelId = `10000000000000${counter}`;
  pixel = meta.state.addPixel(pixelId, { tokens: [TOKEN] });
  meta.state.addPixel(`20000000000000${counter}`, { tokens: [OTHER_TOKEN] });
  meta.state.now = () => Date.now();
});

const nowSeconds = () => Math.floor(Date.now() / 1000);

function event(id: string, overrides: Partial<ServerEvent> = {}): ServerEvent {
  const { userData } = buildUserData({ em: `${id}@example.com`, external_id: `cus_${id}` });
  return {
    event_name: 'Purchase',
    event_time: nowSeconds() - 30,
    event_id: id,
    action_source: 'system_generated',
    user_data: userData,
    custom_data: { value: 19.99, currency: 'EUR' },
    ...overrides,
  };
}

interface Answer {
  status: number;
  body: Record<string, unknown> & { error?: Record<string, unknown> };
}

async function post(
  body: unknown,
  options: { token?: string | null; pixel?: string; version?: string; signal?: AbortSignal } = {},
): Promise<Answer> {
  const token = options.token === undefined ? TOKEN : options.token;
  const query = token === null ? '' : `?access_token=${encodeURIComponent(token)}`;
  const response = await fetch(
    `${meta.url}/${options.version ?? 'v24.0'}/${options.pixel ?? pixelId}/events${query}`,
    {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      ...(options.signal ? { signal: options.signal } : {}),
    },
  );
  return { status: response.status, body: (await response.json()) as Answer['body'] };
}

const send = (data: ServerEvent[], extra: Partial<EventsRequest> = {}) => post({ data, ...extra });

describe('the fake Conversions API: accepted batches', () => {
  it('answers {events_received, messages, fbtrace_id} and records every event with pixel, id and name', async () => {
    const answer = await send([event('cs_1'), event('sub_1', { event_name: 'Subscribe', custom_data: {} })], {
      partner_agent: 'tally',
    });
    expect(answer).toEqual({
      status: 200,
      body: {
        events_received: 2,
        messages: [],
        fbtrace_id: expect.stringMatching(/^A[\w-]{10,}$/) as string,
      },
    });
    expect(pixel.delivered.map(({ pixelId: p, eventId, eventName }) => [p, eventId, eventName])).toEqual([
      [pixelId, 'cs_1', 'Purchase'],
      [pixelId, 'sub_1', 'Subscribe'],
    ]);
    expect(pixel.counters).toEqual({
      requests: 1,
      accepted: 1,
      rejected: 0,
      faults: 0,
      eventsReceived: 2,
      duplicates: 0,
    });
  });

  it('accepts the token in the JSON body and test_event_code at the top level', async () => {
    const answer = await post(
      { data: [event('cs_2')], access_token: TOKEN, test_event_code: 'TEST4321' },
      { token: null },
    );
    expect(answer.status).toBe(200);
    expect(pixel.delivered[0]).toMatchObject({ eventId: 'cs_2', testEventCode: 'TEST4321' });
  });

  it('accepts a form post with data as a JSON string, like the curl examples in Meta’s docs', async () => {
    const form = new URLSearchParams({ data: JSON.stringify([event('cs_form')]), access_token: TOKEN });
    const response = await fetch(`${meta.url}/v24.0/${pixelId}/events`, { method: 'POST', body: form });
    expect(response.status).toBe(200);
    expect(pixel.deliveredIds()).toEqual(['cs_form']);
  });

  it('deduplicates on event_id + event_name within 48 hours and records the duplicates apart', async () => {
    const start = Date.now();
    meta.state.now = () => start;
    await send([
      event('in_1'),
      event('in_1'),
      event('in_1', { event_name: 'PaymentFailed', custom_data: {} }),
    ]);
    await send([event('in_1')]);
    expect(pixel.deliveredIds()).toEqual(['in_1', 'in_1']);
    expect(pixel.delivered.map((e) => e.eventName)).toEqual(['Purchase', 'PaymentFailed']);
    expect(pixel.duplicates.map((e) => [e.eventId, e.eventName])).toEqual([
      ['in_1', 'Purchase'],
      ['in_1', 'Purchase'],
    ]);
    expect(pixel.counters).toMatchObject({ eventsReceived: 4, duplicates: 2 });

    // 48 hours later the same key counts as a new event again.
    meta.state.now = () => start + 48 * 3600 * 1000;
    await send([event('in_1')]);
    expect(pixel.delivered).toHaveLength(3);
  });
});

describe('the fake Conversions API: strict validation', () => {
  it('rejects the whole batch when one event is invalid, naming its index', async () => {
    const bad = event('cs_bad', { custom_data: { value: 10 } });
    const answer = await send([event('cs_a'), event('cs_b'), bad, event('cs_c')]);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({
      message: 'Invalid parameter',
      type: 'OAuthException',
      code: 100,
      is_transient: false,
      error_user_title: 'Missing value or currency',
      fbtrace_id: expect.any(String) as string,
    });
    expect(answer.body.error?.error_user_msg).toMatch(/^Event 2 \(data\[2\]\.custom_data\):/);
    expect(pixel.delivered).toEqual([]);
    expect(pixel.counters).toMatchObject({ requests: 1, accepted: 0, rejected: 1, eventsReceived: 0 });
    expect(classifyGraphResponse(answer.status, answer.body).class).toBe('invalid_event');
  });

  it('answers subcode 2804003 for an event older than 7 days', async () => {
    const answer = await send([event('old', { event_time: nowSeconds() - 8 * 24 * 3600 })]);
    expect(answer.body.error).toMatchObject({
      code: 100,
      error_subcode: 2804003,
      error_user_title: 'Event Timestamp Too Old',
    });
  });

  it('answers subcode 2804016 for unhashed customer information', async () => {
    const answer = await send([event('raw', { user_data: { em: ['person@example.com'] } })]);
    expect(answer.body.error).toMatchObject({ code: 100, error_subcode: 2804016 });
    expect(answer.body.error?.error_user_msg).toMatch(/Event 0 .*em parameter isn't hashed/);
  });

  it('requires client_user_agent and event_source_url for website events', async () => {
    const answer = await send([event('web', { action_source: 'website' })]);
    expect(answer.body.error?.error_user_msg).toMatch(/Event 0 \(data\[0\]\.event_source_url\)/);
  });

  it('rejects more than 1000 events, an empty batch and a body that is not JSON', async () => {
    const many = Array.from({ length: 1001 }, (_, i) => event(`e${i}`));
    expect((await send(many)).body.error).toMatchObject({ code: 100, error_user_title: 'Too many events' });
    expect((await send([])).body.error).toMatchObject({ code: 100 });
    const broken = await post('{"data": [');
    expect(broken.status).toBe(400);
    expect(broken.body.error).toMatchObject({ code: 100, type: 'OAuthException' });
    expect(pixel.delivered).toEqual([]);
  });

  it('rejects a path that is not /{version}/{pixel_id}/events', async () => {
    expect((await post({ data: [event('x')] }, { version: 'latest' })).body.error).toMatchObject({
      code: 2500,
    });
  });
});

describe('the fake Conversions API: access tokens', () => {
  it.each([
    ['no token', { token: null }, { code: 104 }],
    ['an unknown token', { token: 'EAAnotAtoken' }, { code: 190 }],
    ["another pixel's token", { token: OTHER_TOKEN }, { code: 100, error_subcode: 33 }],
    ['an unknown pixel', { pixel: '999' }, { code: 100, error_subcode: 33 }],
  ] as const)('answers %s with Meta’s error, classified token_invalid', async (_name, options, expected) => {
    const answer = await post({ data: [event('t')] }, options);
    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject(expected);
    expect(classifyGraphResponse(answer.status, answer.body).class).toBe('token_invalid');
    expect(pixel.delivered).toEqual([]);
  });

  it('answers 190/463 once a token has expired', async () => {
    meta.state.expireToken(TOKEN);
    const answer = await send([event('late')]);
    expect(answer.body.error).toMatchObject({ code: 190, error_subcode: 463 });
    pixel.tokens.add(TOKEN);
  });
});

describe('the fake Conversions API: injected faults', () => {
  it.each([
    ['transient', {}, 500, { code: 2, is_transient: true }],
    ['transient', { code: 1 }, 500, { code: 1, is_transient: true }],
    ['rate_limited', {}, 400, { code: 17 }],
    ['rate_limited', { code: 4 }, 400, { code: 4 }],
    ['rate_limited', { code: 613 }, 400, { code: 613 }],
    ['token_invalid', {}, 400, { code: 190, error_subcode: 463 }],
    ['invalid_event', {}, 400, { code: 100, error_subcode: 2804003 }],
    ['policy', {}, 400, { code: 368 }],
  ] as const)(
    'answers the next N requests with %s %j, then recovers',
    async (cls, options, status, expected) => {
      pixel.failNext(2, cls, options);
      for (let i = 0; i < 2; i++) {
        const answer = await send([event(`f${i}`)]);
        expect(answer.status).toBe(status);
        expect(answer.body.error).toMatchObject(expected);
        expect(classifyGraphResponse(answer.status, answer.body).class).toBe(cls);
      }
      expect((await send([event('ok')])).status).toBe(200);
      expect(pixel.deliveredIds()).toEqual(['ok']);
      expect(pixel.counters).toMatchObject({ requests: 3, faults: 2, accepted: 1 });
    },
  );

  it('drops the connection for a network fault', async () => {
    pixel.failNext(1, 'network');
    const error = await send([event('n1')]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(TypeError);
    expect(classifyNetworkError(error).class).toBe('transient');
    expect(pixel.delivered).toEqual([]);
    expect(meta.state.responses.at(-1)).toMatchObject({ pixelId, outcome: 'network', events: 1 });
  });

  it('still delivers an event whose answer came after the client gave up; the retry is a duplicate', async () => {
    pixel.latencyMs = 1_000;
    const timedOut = await post({ data: [event('slow')] }, { signal: AbortSignal.timeout(50) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(classifyNetworkError(timedOut)).toMatchObject({ class: 'transient' });
    expect(classifyNetworkError(timedOut).message).toMatch(/did not answer in time/);
    await expect.poll(() => pixel.counters.accepted, { timeout: 5_000 }).toBe(1);

    pixel.latencyMs = 0;
    expect((await send([event('slow')])).status).toBe(200);
    expect(pixel.deliveredIds()).toEqual(['slow']);
    expect(pixel.duplicates.map((e) => e.eventId)).toEqual(['slow']);
  });

  it('never answers a hanging pixel, and closes cleanly with the request still open', async () => {
    const hanging = await startFakeMeta();
    const p = hanging.state.addPixel('42', { tokens: [TOKEN] });
    p.hang = true;
    const request = fetch(`${hanging.url}/v24.0/42/events?access_token=${TOKEN}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ data: [event('h1')] }),
    }).then(
      () => 'answered',
      () => 'failed',
    );
    await expect.poll(() => p.counters.requests).toBe(1);
    await hanging.close();
    expect(await request).toBe('failed');
    expect(p.delivered).toEqual([]);
    expect(p.counters).toMatchObject({ requests: 1, faults: 1, accepted: 0 });
    expect(hanging.state.responses).toEqual([{ pixelId: '42', outcome: 'hang', events: 1 }]);
  });
});
