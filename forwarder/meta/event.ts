import { isIP } from 'node:net';

/**
 * The wire format of Meta's Conversions API (`POST /{version}/{pixel_id}/events`) and the checks Meta
 * applies to it. The forwarder validates a batch before sending it, so one bad event can be set aside
 * without a round trip; the fake server in test/fakes/meta answers with the same rules.
 * https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/server-event
 */

export const ACTION_SOURCES = [
  'email',
  'website',
  'app',
  'phone_call',
  'chat',
  'physical_store',
  'system_generated',
  'business_messaging',
  'other',
] as const;
export type ActionSource = (typeof ACTION_SOURCES)[number];

/** Customer information keys that Meta accepts only as SHA-256 (lowercase hex), sent as arrays. */
export const HASHED_USER_DATA_KEYS = [
  'em',
  'ph',
  'fn',
  'ln',
  'ge',
  'db',
  'ct',
  'st',
  'zp',
  'country',
  'external_id',
] as const;
export type HashedUserDataKey = (typeof HASHED_USER_DATA_KEYS)[number];

/** Keys Meta wants as given (trimmed), never hashed: fbclid inside fbc is case-sensitive, for one. */
export const PLAIN_USER_DATA_KEYS = [
  'client_ip_address',
  'client_user_agent',
  'fbc',
  'fbp',
  'subscription_id',
  'fb_login_id',
  'lead_id',
  'anon_id',
  'madid',
  'page_id',
  'page_scoped_user_id',
  'ctwa_clid',
  'ig_account_id',
  'ig_sid',
] as const;
export type PlainUserDataKey = (typeof PLAIN_USER_DATA_KEYS)[number];

export type UserData = { [K in HashedUserDataKey]?: string[] } & { [K in PlainUserDataKey]?: string };

export interface CustomData {
  value?: number;
  /** ISO 4217, upper case. */
  currency?: string;
  content_ids?: string[];
  content_type?: string;
  contents?: { id: string; quantity?: number; item_price?: number }[];
  order_id?: string;
  num_items?: number;
  predicted_ltv?: number;
  status?: string;
  [custom: string]: unknown;
}

export interface ServerEvent {
  /** Standard (Purchase, Subscribe, …) or custom name, at most 50 characters. */
  event_name: string;
  /** Unix seconds; at most 7 days old, never in the future. */
  event_time: number;
  /** Deduplication key together with event_name (Meta keeps the first within 48 h). */
  event_id: string;
  action_source: ActionSource;
  /** Required when action_source is `website`. */
  event_source_url?: string;
  user_data: UserData;
  custom_data?: CustomData;
  opt_out?: boolean;
  referrer_url?: string;
  data_processing_options?: string[];
  data_processing_options_country?: number;
  data_processing_options_state?: number;
}

export interface EventsRequest {
  data: ServerEvent[];
  test_event_code?: string;
  partner_agent?: string;
}

export interface EventsResponse {
  events_received: number;
  messages: string[];
  fbtrace_id: string;
}

export const MAX_EVENTS_PER_REQUEST = 1000;
export const MAX_EVENT_NAME_LENGTH = 50;
export const MAX_EVENT_AGE_SECONDS = 7 * 24 * 60 * 60;

/**
 * Subcodes Meta returns with code 100 for a rejected event. Only these three are known from Meta's
 * documentation and published error reports; other checks are answered with code 100 and no subcode.
 */
export const SUBCODE_EVENT_TOO_OLD = 2804003;
export const SUBCODE_PARAMETER_NOT_HASHED = 2804016;
export const SUBCODE_INSUFFICIENT_CUSTOMER_INFORMATION = 2804050;

/** ISO 4217 (current list, with funds and metals): what `custom_data.currency` may hold. */
const ISO_4217 = new Set(
  (
    'AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN ' +
    'BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD ' +
    'FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS ' +
    'KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN ' +
    'MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR ' +
    'SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD ' +
    'USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU ' +
    'XTS XUA XXX YER ZAR ZMW ZWG ZWL'
  ).split(' '),
);

export function isIsoCurrency(code: string): boolean {
  return ISO_4217.has(code);
}

/** Lowercase hex digits; a table look-up per character is ~3× faster than a regex, and Meta checks every value. */
const LOWER_HEX_DIGIT = new Uint8Array(128);
for (const c of '0123456789abcdef') LOWER_HEX_DIGIT[c.charCodeAt(0)] = 1;

/** Whether a value has the form of a SHA-256 hash as Meta wants it: 64 lowercase hex digits. */
export function isSha256Hex(value: string): boolean {
  if (value.length !== 64) return false;
  for (let i = 0; i < 64; i++) if (LOWER_HEX_DIGIT[value.charCodeAt(i)] !== 1) return false;
  return true;
}

const KNOWN_EVENT_KEYS = new Set([
  'event_name',
  'event_time',
  'event_id',
  'action_source',
  'event_source_url',
  'user_data',
  'custom_data',
  'opt_out',
  'referrer_url',
  'data_processing_options',
  'data_processing_options_country',
  'data_processing_options_state',
  'app_data',
  'original_event_data',
  'attribution_data',
  'messaging_channel',
  'customer_segmentation',
]);
const HASHED_KEYS = new Set<string>(HASHED_USER_DATA_KEYS);
const PLAIN_KEYS = new Set<string>(PLAIN_USER_DATA_KEYS);

/**
 * Keys that do not identify a customer on their own. Meta rejects an event whose customer information
 * is only a subset of one of these groups (best practices: "baseline requirements for matching").
 */
const INSUFFICIENT_ALONE: readonly (readonly string[])[] = [
  ['ct', 'country', 'st', 'zp', 'ge', 'client_user_agent'],
  ['db', 'client_user_agent'],
  ['fn', 'ge'],
  ['ln', 'ge'],
];
/** One bit per customer information key, so the groups above are checked with a mask per event. */
const USER_DATA_KEY_BIT = new Map<string, number>(
  [...HASHED_USER_DATA_KEYS, ...PLAIN_USER_DATA_KEYS].map((key, i) => [key, 1 << i]),
);
const INSUFFICIENT_ALONE_MASKS = INSUFFICIENT_ALONE.map((group) =>
  group.reduce((mask, key) => mask | USER_DATA_KEY_BIT.get(key)!, 0),
);

export interface ValidationIssue {
  /** Index of the event in `data`, or null when the request as a whole is wrong. */
  index: number | null;
  /** Dotted path of the offending parameter, e.g. `data[3].user_data.em`. */
  field: string;
  /** Short title, like Meta's `error_user_title`. */
  title: string;
  /** Explanation; never contains customer data. */
  message: string;
  /** Meta's error_subcode for this failure, when it is known. */
  subcode?: number;
}

export type ValidationResult =
  { ok: true; request: EventsRequest } | { ok: false; issues: ValidationIssue[] };

export interface ValidationOptions {
  /** Unix seconds to validate event_time against; defaults to the current time. */
  now?: number;
}

const isString = (value: unknown): value is string => typeof value === 'string';
const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Checks a request body as Meta does: every issue is reported, in event order. */
export function validateEventsRequest(body: unknown, options: ValidationOptions = {}): ValidationResult {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const issues: ValidationIssue[] = [];
  const request = (title: string, field: string, message: string) =>
    issues.push({ index: null, field, title, message });

  if (!isRecord(body)) {
    request('Invalid request', 'body', 'The request body must be a JSON object with a data array.');
    return { ok: false, issues };
  }
  const { data, test_event_code: testEventCode, partner_agent: partnerAgent } = body;
  if (testEventCode !== undefined && (typeof testEventCode !== 'string' || testEventCode.trim() === '')) {
    request('Invalid parameter', 'test_event_code', 'test_event_code must be a non-empty string.');
  }
  if (partnerAgent !== undefined && (typeof partnerAgent !== 'string' || partnerAgent.trim() === '')) {
    request('Invalid parameter', 'partner_agent', 'partner_agent must be a non-empty string.');
  }
  if (!Array.isArray(data)) {
    request('Invalid parameter', 'data', 'The parameter data is required and must be an array of events.');
  } else if (data.length === 0) {
    request('Invalid parameter', 'data', 'The parameter data must contain at least one event.');
  } else if (data.length > MAX_EVENTS_PER_REQUEST) {
    request(
      'Too many events',
      'data',
      `A request may contain at most ${MAX_EVENTS_PER_REQUEST} events; this one has ${data.length}.`,
    );
  } else {
    data.forEach((event, index) => issues.push(...validateServerEvent(event, index, now)));
  }
  return issues.length === 0
    ? { ok: true, request: body as unknown as EventsRequest }
    : { ok: false, issues };
}

export interface EventValidationOptions {
  /**
   * The user_data hashes come from buildUserData (SHA-256 computed there, or a value it checked as 64 hex
   * digits and lowercased), so their form is not checked again; everything else still is. Meta's side,
   * the fake server, never sets this.
   */
  trustHashes?: boolean;
}

/** Checks one event of a batch; `now` is in Unix seconds. */
export function validateServerEvent(
  event: unknown,
  index: number,
  now: number,
  options: EventValidationOptions = {},
): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const at = `data[${index}]`;
  const issue = (field: string, title: string, message: string, subcode?: number) =>
    issues.push({
      index,
      field: `${at}${field ? `.${field}` : ''}`,
      title,
      message,
      ...(subcode ? { subcode } : {}),
    });

  if (!isRecord(event)) {
    issue('', 'Invalid event', 'Each element of data must be an event object.');
    return issues;
  }
  for (const key of Object.keys(event)) {
    if (!KNOWN_EVENT_KEYS.has(key))
      issue(key, 'Unknown parameter', `${key} is not a server event parameter.`);
  }

  const name = event.event_name;
  if (typeof name !== 'string' || name.trim() === '') {
    issue('event_name', 'Missing event name', 'event_name is required and must be a non-empty string.');
  } else if (name.length > MAX_EVENT_NAME_LENGTH) {
    issue(
      'event_name',
      'Event name too long',
      `event_name must be at most ${MAX_EVENT_NAME_LENGTH} characters.`,
    );
  }

  const time = event.event_time;
  if (typeof time !== 'number' || !Number.isInteger(time) || time <= 0) {
    issue(
      'event_time',
      'Invalid event time',
      'event_time is required and must be a Unix timestamp in seconds.',
    );
  } else if (time > now) {
    const unit = time > now * 100 ? ' It looks like milliseconds: send seconds.' : '';
    issue('event_time', 'Event Timestamp In Future', `event_time is in the future.${unit}`);
  } else if (now - time > MAX_EVENT_AGE_SECONDS) {
    issue(
      'event_time',
      'Event Timestamp Too Old',
      'The timestamp for this event is too far in the past. Events need to be sent from your server within 7 days of when they occurred.',
      SUBCODE_EVENT_TOO_OLD,
    );
  }

  if (event.event_id !== undefined && (typeof event.event_id !== 'string' || event.event_id.trim() === '')) {
    issue('event_id', 'Invalid event ID', 'event_id must be a non-empty string.');
  }

  const source = event.action_source;
  if (typeof source !== 'string' || !(ACTION_SOURCES as readonly string[]).includes(source)) {
    issue(
      'action_source',
      'Invalid action source',
      `action_source must be one of ${ACTION_SOURCES.join(', ')}.`,
    );
  }
  const website = source === 'website';
  if (event.event_source_url !== undefined || website) {
    if (!isHttpUrl(event.event_source_url)) {
      issue(
        'event_source_url',
        'Missing event source URL',
        website
          ? 'event_source_url is required for website events and must be an http(s) URL.'
          : 'event_source_url must be an http(s) URL.',
      );
    }
  }

  if (!isRecord(event.user_data)) {
    issue(
      'user_data',
      'Customer information parameters',
      'user_data is required and must be an object.',
      SUBCODE_INSUFFICIENT_CUSTOMER_INFORMATION,
    );
  } else {
    validateUserData(
      event.user_data,
      website,
      options.trustHashes === true,
      (field, title, message, subcode) =>
        issue(field ? `user_data.${field}` : 'user_data', title, message, subcode),
    );
  }

  if (event.custom_data !== undefined && !isRecord(event.custom_data)) {
    issue('custom_data', 'Invalid custom data', 'custom_data must be an object.');
  } else {
    const custom = event.custom_data ?? {};
    const { value, currency } = custom;
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
      issue('custom_data.value', 'Invalid value', 'custom_data.value must be a number.');
    }
    if (currency !== undefined && (typeof currency !== 'string' || !isIsoCurrency(currency))) {
      issue(
        'custom_data.currency',
        'Invalid currency',
        'custom_data.currency must be an ISO 4217 code in upper case, e.g. USD.',
      );
    }
    if (name === 'Purchase' && (value === undefined || currency === undefined)) {
      issue(
        'custom_data',
        'Missing value or currency',
        'Purchase events require custom_data.value and custom_data.currency.',
      );
    }
  }

  if (event.opt_out !== undefined && typeof event.opt_out !== 'boolean') {
    issue('opt_out', 'Invalid parameter', 'opt_out must be a boolean.');
  }
  const dpo = event.data_processing_options;
  if (dpo !== undefined && (!Array.isArray(dpo) || dpo.some((option) => option !== 'LDU'))) {
    issue('data_processing_options', 'Invalid parameter', 'data_processing_options must be [] or ["LDU"].');
  }
  for (const key of ['data_processing_options_country', 'data_processing_options_state'] as const) {
    const code = event[key];
    if (code !== undefined && (typeof code !== 'number' || !Number.isInteger(code) || code < 0)) {
      issue(key, 'Invalid parameter', `${key} must be a non-negative integer.`);
    }
  }
  return issues;
}

function validateUserData(
  userData: Record<string, unknown>,
  website: boolean,
  trustHashes: boolean,
  issue: (field: string, title: string, message: string, subcode?: number) => void,
): void {
  let present = 0;
  for (const key of Object.keys(userData)) {
    const raw = userData[key];
    if (HASHED_KEYS.has(key)) {
      const values: unknown = typeof raw === 'string' ? [raw] : raw;
      if (!Array.isArray(values) || values.length === 0 || !values.every(isString)) {
        issue(key, 'Invalid parameter', `${key} must be a string or a non-empty array of strings.`);
        continue;
      }
      // external_id: Meta recommends hashing but accepts any identifier.
      if (key !== 'external_id' && !trustHashes && !values.every(isSha256Hex)) {
        issue(
          key,
          'User Parameter Not Hashed',
          `The ${key} parameter isn't hashed. Hash all customer information parameters as SHA-256 (64 lowercase hex characters), except client IP address, client user agent, click ID and browser ID.`,
          SUBCODE_PARAMETER_NOT_HASHED,
        );
        continue;
      }
      if (key === 'external_id' && values.some((v) => v.trim() === '')) {
        issue(key, 'Invalid parameter', 'external_id values must be non-empty.');
        continue;
      }
      present |= USER_DATA_KEY_BIT.get(key)!;
    } else if (PLAIN_KEYS.has(key)) {
      if (typeof raw !== 'string' || raw.trim() === '') {
        issue(key, 'Invalid parameter', `${key} must be a non-empty string.`);
      } else if (key === 'client_ip_address' && isIP(raw) === 0) {
        issue(key, 'Invalid IP address', 'client_ip_address must be a valid IPv4 or IPv6 address.');
      } else {
        present |= USER_DATA_KEY_BIT.get(key)!;
      }
    } else {
      issue(key, 'Unknown parameter', `${key} is not a customer information parameter.`);
    }
  }
  if (website && typeof userData.client_user_agent !== 'string') {
    issue(
      'client_user_agent',
      'Missing client user agent',
      'client_user_agent is required for website events.',
    );
  }
  const insufficient = present === 0 || INSUFFICIENT_ALONE_MASKS.some((group) => (present & ~group) === 0);
  if (insufficient) {
    issue(
      '',
      'Customer information parameters',
      'This event has insufficient customer information: add em, ph, external_id, fbc, fbp or client_ip_address with client_user_agent.',
      SUBCODE_INSUFFICIENT_CUSTOMER_INFORMATION,
    );
  }
}

function isHttpUrl(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:';
  } catch {
    return false;
  }
}
