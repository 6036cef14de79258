import { describe, expect, it } from 'vitest';
import { classifyGraphResponse, classifyNetworkError, redactSecrets, type MetaErrorClass } from './errors.js';

const token = 'EAAGm0PX4ZCpsBAKZCr2ZBZCx1ZAZBZCZCZAZBZCZCZAZBZCZCZA9Xk';
const graph = (error: Record<string, unknown>) => ({
  error: { type: 'OAuthException', fbtrace_id: 'AbC123', ...error },
});

describe('classifyGraphResponse', () => {
  it.each<[string, number, unknown, MetaErrorClass]>([
    [
      'HTTP 500, code 2, is_transient',
      500,
      graph({ code: 2, message: 'An unexpected error has occurred.', is_transient: true }),
      'transient',
    ],
    ['code 1 unknown error', 500, graph({ code: 1, message: 'An unknown error occurred' }), 'transient'],
    ['code 341', 400, graph({ code: 341, message: 'Application limit reached' }), 'transient'],
    ['HTTP 503 without a Graph body', 503, '<html>Service Unavailable</html>', 'transient'],
    ['HTTP 502 with no body', 502, undefined, 'transient'],
    ['unknown code flagged is_transient', 400, graph({ code: 9999, is_transient: true }), 'transient'],
    [
      'code 4 application limit',
      400,
      graph({ code: 4, message: '(#4) Application request limit reached', is_transient: true }),
      'rate_limited',
    ],
    [
      'code 17 user limit',
      400,
      graph({ code: 17, message: '(#17) User request limit reached' }),
      'rate_limited',
    ],
    [
      'code 32 page limit',
      400,
      graph({ code: 32, message: '(#32) Page request limit reached' }),
      'rate_limited',
    ],
    [
      'code 613',
      400,
      graph({ code: 613, message: '(#613) Calls to this api have exceeded the rate limit.' }),
      'rate_limited',
    ],
    ['business use case 80004', 400, graph({ code: 80004 }), 'rate_limited'],
    ['HTTP 429 without a Graph body', 429, 'Too Many Requests', 'rate_limited'],
    [
      'code 190 invalid token',
      400,
      graph({ code: 190, message: 'Invalid OAuth access token - Cannot parse access token' }),
      'token_invalid',
    ],
    [
      'code 190/463 expired',
      400,
      graph({ code: 190, error_subcode: 463, message: 'Error validating access token: Session has expired' }),
      'token_invalid',
    ],
    [
      'code 104 no token',
      400,
      graph({ code: 104, message: 'An access token is required to request this resource.' }),
      'token_invalid',
    ],
    [
      'code 10 permission',
      403,
      graph({ code: 10, message: '(#10) Application does not have permission for this action' }),
      'token_invalid',
    ],
    ['code 200 permission', 403, graph({ code: 200, message: '(#200) Permissions error' }), 'token_invalid'],
    ['code 299', 400, graph({ code: 299 }), 'token_invalid'],
    [
      'code 100/33 no access to the pixel',
      400,
      graph({ code: 100, error_subcode: 33, message: 'Unsupported post request.' }),
      'token_invalid',
    ],
    [
      'code 100/2804003 too old',
      400,
      graph({ code: 100, error_subcode: 2804003, message: 'Invalid parameter' }),
      'invalid_event',
    ],
    [
      'code 100 even if is_transient',
      400,
      graph({ code: 100, is_transient: true, message: 'Invalid parameter' }),
      'invalid_event',
    ],
    [
      'code 100 on HTTP 500: the code decides',
      500,
      graph({ code: 100, message: 'Invalid parameter' }),
      'invalid_event',
    ],
    ['code 3', 400, graph({ code: 3, message: 'Unknown method' }), 'invalid_event'],
    [
      'code 368 policy',
      400,
      graph({ code: 368, message: '(#368) The action attempted has been deemed abusive' }),
      'policy',
    ],
    ['body as a JSON string', 400, JSON.stringify(graph({ code: '17' })), 'rate_limited'],
    ['unknown 4xx', 400, 'Bad Request', 'invalid_event'],
  ])('%s (HTTP %i)', (_name, status, body, expected) => {
    expect(classifyGraphResponse(status, body).class).toBe(expected);
  });

  it('keeps code, subcode, trace id and a readable message', () => {
    const result = classifyGraphResponse(
      400,
      graph({
        code: 100,
        error_subcode: 2804003,
        message: 'Invalid parameter',
        error_user_title: 'Event Timestamp Too Old',
        error_user_msg: 'The timestamp for this event is too far in the past.',
        is_transient: false,
      }),
    );
    expect(result).toEqual({
      class: 'invalid_event',
      status: 400,
      code: 100,
      subcode: 2804003,
      fbtraceId: 'AbC123',
      message:
        'Meta Graph API error 100/2804003 (OAuthException): Invalid parameter — Event Timestamp Too Old: The timestamp for this event is too far in the past. [HTTP 400]',
    });
  });

  it('never lets an access token into the message', () => {
    const bodies = [
      graph({ code: 190, message: `Malformed access token ${token}` }),
      graph({
        code: 100,
        message: `Bad request to https://graph.facebook.com/v24.0/1/events?access_token=${token}&x=1`,
      }),
      `<pre>POST /v24.0/1/events?appsecret_proof=abc123&access_token=${token}</pre>`,
      JSON.stringify({ error: { code: 1, message: `{"access_token": "${token}"}` } }),
      graph({ code: 1, message: `token xyz-not-eaa-shaped, Authorization: Bearer sekrit-token` }),
    ];
    for (const body of bodies) {
      const { message } = classifyGraphResponse(400, body, { secrets: ['xyz-not-eaa-shaped'] });
      expect(message).not.toContain(token);
      expect(message).not.toContain(token.slice(0, 12));
      expect(message).not.toContain('xyz-not-eaa-shaped');
      expect(message).not.toContain('sekrit');
      expect(message).not.toContain('abc123');
      expect(message).toContain('[redacted]');
    }
  });

  it('bounds the message length and strips control characters', () => {
    const { message } = classifyGraphResponse(
      400,
      graph({ code: 100, message: `line1\nline2\r\n${'x'.repeat(2000)}` }),
    );
    expect(message.length).toBeLessThanOrEqual(500);
    expect(message).not.toMatch(/[\r\n]/);
  });
});

describe('classifyNetworkError', () => {
  it('treats connection failures and timeouts as transient, with a safe message', () => {
    const refused = Object.assign(new Error(`connect ECONNREFUSED 127.0.0.1:443`), { code: 'ECONNREFUSED' });
    const fetchFailed = new TypeError('fetch failed', { cause: refused });
    const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    const urlInMessage = new Error(
      `request to https://graph.facebook.com/v24.0/1/events?access_token=${token} failed`,
    );

    expect(classifyNetworkError(fetchFailed)).toEqual({
      class: 'transient',
      message:
        'Meta could not be reached: TypeError: fetch failed; caused by connect ECONNREFUSED 127.0.0.1:443',
    });
    expect(classifyNetworkError(timeout).message).toMatch(/^Meta did not answer in time: TimeoutError/);
    expect(classifyNetworkError(urlInMessage).message).not.toContain(token);
    expect(classifyNetworkError('socket hang up').class).toBe('transient');
  });
});

describe('redactSecrets', () => {
  it('removes tokens from URLs, form bodies and JSON and leaves other text alone', () => {
    expect(redactSecrets(`https://x/events?access_token=${token}&debug=all`)).toBe(
      'https://x/events?access_token=[redacted]&debug=all',
    );
    expect(redactSecrets(`access_token%3D${token}`)).toBe('access_token%3D[redacted]');
    expect(redactSecrets(`{"access_token":"${token}","data":[]}`)).toBe(
      '{"access_token":"[redacted]","data":[]}',
    );
    expect(redactSecrets('Invalid parameter (#100)')).toBe('Invalid parameter (#100)');
    expect(redactSecrets('Invalid OAuth access token - Cannot parse access token')).toBe(
      'Invalid OAuth access token - Cannot parse access token',
    );
  });
});
