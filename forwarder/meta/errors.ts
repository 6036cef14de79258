/**
 * What a failed Conversions API call means for the forwarder. Graph API errors carry
 * `{error: {message, type, code, error_subcode, error_user_title, error_user_msg, fbtrace_id, is_transient}}`;
 * the code decides, `is_transient` and the HTTP status only decide for codes we do not know.
 * https://developers.facebook.com/docs/graph-api/guides/error-handling
 */

export type MetaErrorClass =
  /** Retry with exponential backoff and jitter, same event_id. */
  | 'transient'
  /** Back off for minutes and cut concurrency. */
  | 'rate_limited'
  /** Pause the pixel's queue and alert; keep the events. */
  | 'token_invalid'
  /** Dead-letter the offending event; split the batch and resend the rest. */
  | 'invalid_event'
  /** Meta blocked the call for policy reasons: wait, then retry. */
  | 'policy';

export interface GraphError {
  message?: string;
  type?: string;
  code?: number;
  error_subcode?: number;
  error_user_title?: string;
  error_user_msg?: string;
  fbtrace_id?: string;
  is_transient?: boolean;
}

export interface ClassifiedMetaError {
  class: MetaErrorClass;
  /** HTTP status, when a response arrived. */
  status?: number;
  code?: number;
  subcode?: number;
  fbtraceId?: string;
  /** Safe for logs, status conditions and metrics: access tokens removed, length bounded. */
  message: string;
}

export interface RedactOptions {
  /** Secrets to remove wherever they appear (the pixel's access token, the app secret). */
  secrets?: readonly string[];
}

const TOKEN_INVALID_CODES = new Set([102, 104, 190, 10]);
const RATE_LIMIT_CODES = new Set([4, 17, 32, 613]);
const TRANSIENT_CODES = new Set([1, 2, 341]);
const INVALID_EVENT_CODES = new Set([100, 3]);
const POLICY_CODES = new Set([368]);
/** "Unsupported post request": the token cannot see the pixel, or the pixel does not exist. */
const SUBCODE_NO_PERMISSION = 33;

const MAX_MESSAGE_LENGTH = 500;

/** Classifies an HTTP response from the Graph API that is not a success. `body` is parsed JSON or raw text. */
export function classifyGraphResponse(
  status: number,
  body: unknown,
  options: RedactOptions = {},
): ClassifiedMetaError {
  const error = graphErrorOf(body);
  const code = error?.code;
  const subcode = error?.error_subcode;
  const cls = classOf(status, error);
  const parts: string[] = [];
  if (error !== undefined) {
    parts.push(`Meta Graph API error ${code ?? '?'}${subcode !== undefined ? `/${subcode}` : ''}`);
    if (error.type) parts.push(` (${error.type})`);
    if (error.message) parts.push(`: ${error.message}`);
    const detail = [error.error_user_title, error.error_user_msg].filter(Boolean).join(': ');
    if (detail) parts.push(` — ${detail}`);
    parts.push(` [HTTP ${status}]`);
  } else {
    const text = typeof body === 'string' ? body.trim() : '';
    parts.push(`Meta answered HTTP ${status}${text ? `: ${text}` : ' without a Graph API error body'}`);
  }
  return {
    class: cls,
    status,
    ...(code !== undefined ? { code } : {}),
    ...(subcode !== undefined ? { subcode } : {}),
    ...(error?.fbtrace_id !== undefined ? { fbtraceId: redactSecrets(error.fbtrace_id, options) } : {}),
    message: safeMessage(parts.join(''), options),
  };
}

/** Classifies a request that got no HTTP response: connection refused or reset, DNS failure, timeout. */
export function classifyNetworkError(error: unknown, options: RedactOptions = {}): ClassifiedMetaError {
  const describe = (e: unknown): string => {
    if (!(e instanceof Error)) return String(e);
    const code = (e as { code?: unknown }).code;
    const name = e.name === 'Error' ? '' : `${e.name}: `;
    const own = `${name}${e.message}${typeof code === 'string' && !e.message.includes(code) ? ` (${code})` : ''}`;
    return e.cause !== undefined && e.cause !== e ? `${own}; caused by ${describe(e.cause)}` : own;
  };
  const timedOut =
    error instanceof Error &&
    (error.name === 'TimeoutError' || error.name === 'AbortError' || /timeout/i.test(error.message));
  const prefix = timedOut ? 'Meta did not answer in time' : 'Meta could not be reached';
  return { class: 'transient', message: safeMessage(`${prefix}: ${describe(error)}`, options) };
}

function classOf(status: number, error: GraphError | undefined): MetaErrorClass {
  const code = error?.code;
  if (code !== undefined) {
    if (TOKEN_INVALID_CODES.has(code) || (code >= 200 && code <= 299)) return 'token_invalid';
    if (code === 100 && error?.error_subcode === SUBCODE_NO_PERMISSION) return 'token_invalid';
    // Business-use-case rate limits of the Marketing API use 80000–80014.
    if (RATE_LIMIT_CODES.has(code) || (code >= 80000 && code <= 80014)) return 'rate_limited';
    if (POLICY_CODES.has(code)) return 'policy';
    if (TRANSIENT_CODES.has(code)) return 'transient';
    if (INVALID_EVENT_CODES.has(code)) return 'invalid_event';
  }
  if (error?.is_transient === true || status >= 500 || status === 408) return 'transient';
  if (status === 429) return 'rate_limited';
  if (status === 401 || status === 403) return 'token_invalid';
  return 'invalid_event';
}

function graphErrorOf(body: unknown): GraphError | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const error = (parsed as { error?: unknown }).error;
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const num = (v: unknown) =>
    typeof v === 'number' && Number.isFinite(v)
      ? v
      : typeof v === 'string' && /^-?\d+$/.test(v)
        ? Number(v)
        : undefined;
  const out: GraphError = {};
  const assign = <K extends keyof GraphError>(key: K, value: GraphError[K] | undefined) => {
    if (value !== undefined) out[key] = value;
  };
  assign('message', str(e.message));
  assign('type', str(e.type));
  assign('code', num(e.code));
  assign('error_subcode', num(e.error_subcode));
  assign('error_user_title', str(e.error_user_title));
  assign('error_user_msg', str(e.error_user_msg));
  assign('fbtrace_id', str(e.fbtrace_id));
  assign('is_transient', typeof e.is_transient === 'boolean' ? e.is_transient : undefined);
  return out;
}

/**
 * Removes access tokens from any text: `access_token=` and `appsecret_proof=` parameters in URLs and form
 * bodies, `"access_token": "…"` in JSON, `Bearer …` headers, Graph's own "Malformed access token …"
 * echo, anything that looks like a Meta token (`EAA…`) and the given secrets.
 */
export function redactSecrets(text: string, options: RedactOptions = {}): string {
  let out = text;
  for (const secret of options.secrets ?? []) {
    if (secret.length >= 4) out = out.split(secret).join('[redacted]');
  }
  return out
    .replace(/((?:access_token|appsecret_proof)(?:=|%3D))[^&\s"'#]*/gi, '$1[redacted]')
    .replace(/(["']?(?:access_token|appsecret_proof)["']?\s*:\s*["'])[^"']*/gi, '$1[redacted]')
    .replace(/(bearer\s+)[A-Za-z0-9._~+/=-]+/gi, '$1[redacted]')
    .replace(/(access token\s+)[A-Za-z0-9_-]{16,}/gi, '$1[redacted]')
    .replace(/\bEAA[A-Za-z0-9]{10,}/g, '[redacted]');
}

function safeMessage(text: string, options: RedactOptions): string {
  // eslint-disable-next-line no-control-regex
  const clean = redactSecrets(text, options).replace(/[\u0000-\u001f\u007f]+/g, ' ');
  return clean.length > MAX_MESSAGE_LENGTH ? `${clean.slice(0, MAX_MESSAGE_LENGTH - 1)}…` : clean;
}
