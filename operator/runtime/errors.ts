/**
 * HTTP status of a failed Kubernetes API call. client-node 1.4.0 throws ApiException (`code`) from
 * the generated clients and a plain Error with `statusCode` from Watch; a Status body carries `code` too.
 */
export function statusCode(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown };
  if (typeof e.code === 'number') return e.code;
  if (typeof e.statusCode === 'number') return e.statusCode;
  if (typeof e.body === 'object' && e.body !== null) {
    const code = (e.body as { code?: unknown }).code;
    if (typeof code === 'number') return code;
  }
  return undefined;
}

export const isNotFound = (err: unknown): boolean => statusCode(err) === 404;

/** 409: an optimistic-concurrency loss (stale resourceVersion) or an AlreadyExists on create. */
export const isConflict = (err: unknown): boolean => statusCode(err) === 409;

/**
 * A one-line description for logs and status. ApiException's own message embeds the whole response
 * body and headers; the Status `message` the API server wrote (or its plain-text body) is what people need.
 */
export function describeError(err: unknown): string {
  const code = statusCode(err);
  const http = code === undefined ? 'HTTP error' : `HTTP ${code}`;
  if (typeof err === 'object' && err !== null && 'body' in err) {
    const status = parseBody(err.body);
    if (status?.message)
      return `${http}${status.reason ? ` ${status.reason}` : ''}: ${oneLine(status.message)}`;
    if (typeof err.body === 'string' && err.body.trim() !== '') return `${http}: ${oneLine(err.body)}`;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (message.startsWith('HTTP-Code:')) {
    // An ApiException without a usable body: keep its "Message:" line, drop body and headers.
    const line = message.split('\n').find((l) => l.startsWith('Message: '));
    return line ? `${http}: ${line.slice('Message: '.length)}` : http;
  }
  const first = oneLine(message);
  return code !== undefined && !first.includes(String(code)) ? `${http}: ${first}` : first;
}

function oneLine(text: string): string {
  const line = text.trim().split('\n', 1)[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

function parseBody(body: unknown): { message?: string; reason?: string } | undefined {
  if (typeof body === 'string') {
    try {
      return parseBody(JSON.parse(body));
    } catch {
      return undefined;
    }
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const { message, reason } = body as { message?: unknown; reason?: unknown };
  return {
    message: typeof message === 'string' ? message : undefined,
    reason: typeof reason === 'string' ? reason : undefined,
  };
}
