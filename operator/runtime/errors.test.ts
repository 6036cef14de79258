import { ApiException } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { describeError, isConflict, isNotFound, statusCode } from './errors.js';

describe('API errors', () => {
  const conflict = new ApiException(
    409,
    'Operation failed',
    {
      kind: 'Status',
      status: 'Failure',
      reason: 'Conflict',
      code: 409,
      message:
        'Operation cannot be fulfilled on leases.coordination.k8s.io "tally": the object has been modified',
    },
    { 'content-type': 'application/json' },
  );

  it('read the status code from ApiException, Watch errors and Status bodies', () => {
    expect(statusCode(conflict)).toBe(409);
    expect(isConflict(conflict)).toBe(true);
    expect(isNotFound(Object.assign(new Error('Not Found'), { statusCode: 404 }))).toBe(true);
    expect(statusCode({ body: { code: 410 } })).toBe(410);
    expect(statusCode(new Error('socket hang up'))).toBeUndefined();
    expect(statusCode('nope')).toBeUndefined();
  });

  it("describe a failure in one line with the API server's own message, not the headers", () => {
    expect(describeError(conflict)).toBe(
      'HTTP 409 Conflict: Operation cannot be fulfilled on leases.coordination.k8s.io "tally": the object has been modified',
    );
    expect(describeError(new ApiException(500, 'x', '{"message":"etcd down"}', {}))).toBe(
      'HTTP 500: etcd down',
    );
    expect(describeError(Object.assign(new Error('Too Many Requests'), { statusCode: 429 }))).toBe(
      'HTTP 429: Too Many Requests',
    );
    expect(describeError(new ApiException(404, 'Unknown API Status Code!', '404 page not found\n', {}))).toBe(
      'HTTP 404: 404 page not found',
    );
    expect(describeError(new ApiException(502, 'Unknown API Status Code!', undefined, {}))).toBe(
      'HTTP 502: Unknown API Status Code!',
    );
    expect(describeError(new Error('connect ECONNREFUSED 127.0.0.1:6443\n    at …'))).toBe(
      'connect ECONNREFUSED 127.0.0.1:6443',
    );
  });
});
