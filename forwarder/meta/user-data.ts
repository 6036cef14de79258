import { hash } from 'node:crypto';
import { isIP } from 'node:net';
import { COUNTRIES, type Country } from './countries.js';
import {
  HASHED_USER_DATA_KEYS,
  PLAIN_USER_DATA_KEYS,
  type HashedUserDataKey,
  type PlainUserDataKey,
  type UserData,
} from './event.js';
import { US_STATES } from './us-states.js';

/**
 * Normalises and hashes customer information the way Meta documents it
 * (https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters).
 * Where Meta's own Node SDK departs from that page (phone, date of birth, country, punctuation in
 * names, IDN e-mail addresses) the page wins. Pure functions: no I/O, no clock unless given one.
 */

type Scalar = string | number | null | undefined;
export type RawHashedValue = Scalar | readonly Scalar[];

/** Customer information as Tally knows it (e.g. from a Stripe customer), keyed like Meta's user_data. */
export type RawUserData = { [K in HashedUserDataKey]?: RawHashedValue } & {
  [K in PlainUserDataKey]?: string | null;
};

export interface UserDataOptions {
  /**
   * Country (alpha-2, alpha-3 or name) assumed for phone numbers, states and ZIP codes when the
   * customer's own `country` is missing; the customer's country wins when both are known.
   */
  defaultCountry?: string;
  /** Today, for the date-of-birth range check; defaults to the current date. */
  now?: Date;
}

export interface RejectedValue {
  key: HashedUserDataKey | PlainUserDataKey;
  /** Why the value was left out; never contains the value itself. */
  reason: string;
}

export interface UserDataResult {
  userData: UserData;
  rejected: RejectedValue[];
}

/** 64 hex digits in either case: a value the caller hashed already. A table look-up per character is ~3× a regex. */
const HEX_DIGIT = new Uint8Array(128);
for (const c of '0123456789abcdefABCDEF') HEX_DIGIT[c.charCodeAt(0)] = 1;
function isHashedOrHex(value: string): boolean {
  if (value.length !== 64) return false;
  for (let i = 0; i < 64; i++) if (HEX_DIGIT[value.charCodeAt(i)] !== 1) return false;
  return true;
}

export function sha256Hex(normalized: string): string {
  // One-shot hash (strings are UTF-8): no Hash object per value.
  return hash('sha256', normalized, 'hex');
}

/** Builds Meta's user_data: hashed keys as deduplicated arrays, plain keys trimmed, empty keys omitted. */
export function buildUserData(raw: RawUserData, options: UserDataOptions = {}): UserDataResult {
  const userData: UserData = {};
  const rejected: RejectedValue[] = [];
  let country: Country | undefined;
  if (raw.country !== undefined && raw.country !== null) {
    for (const value of valuesOf(raw.country)) if ((country = resolveCountry(value))) break;
  }
  if (country === undefined && options.defaultCountry !== undefined) {
    country = resolveCountry(options.defaultCountry);
  }
  const context: NormalizeContext = { country, now: options.now };

  for (const key of HASHED_USER_DATA_KEYS) {
    const value = raw[key];
    if (value === undefined || value === null) continue;
    if (typeof value === 'string' || typeof value === 'number') {
      // One value, the usual case: no lists, no dedupe.
      const trimmed = String(value).trim();
      if (trimmed === '') continue;
      const hashed = hashValue(key, trimmed, context);
      if (hashed === undefined) rejected.push({ key, reason: REASONS[key] });
      else userData[key] = [hashed];
      continue;
    }
    const hashes = new Set<string>();
    for (const v of valuesOf(value)) {
      const hashed = hashValue(key, v, context);
      if (hashed === undefined) rejected.push({ key, reason: REASONS[key] });
      else hashes.add(hashed);
    }
    if (hashes.size > 0) userData[key] = [...hashes];
  }

  for (const key of PLAIN_USER_DATA_KEYS) {
    const value = raw[key]?.trim();
    if (!value) continue;
    if (key === 'client_ip_address' && isIP(value) === 0) {
      rejected.push({ key, reason: 'not an IPv4 or IPv6 address' });
      continue;
    }
    userData[key] = value;
  }
  return { userData, rejected };
}

interface NormalizeContext {
  country: Country | undefined;
  now: Date | undefined;
}

/** The SHA-256 of a trimmed value's normalised form (or the value itself when hashed already); undefined when unusable. */
function hashValue(key: HashedUserDataKey, value: string, context: NormalizeContext): string | undefined {
  if (isHashedOrHex(value)) return value.toLowerCase();
  const normalized = normalize(key, value, context);
  return normalized === undefined || normalized === '' ? undefined : sha256Hex(normalized);
}

function normalize(key: HashedUserDataKey, value: string, context: NormalizeContext): string | undefined {
  switch (key) {
    case 'em':
      return normalizeEmail(value);
    case 'ph':
      return normalizePhone(value, context.country);
    case 'fn':
    case 'ln':
      return normalizeName(value);
    case 'ge':
      return normalizeGender(value);
    case 'db':
      return normalizeDateOfBirth(value, (context.now ??= new Date()));
    case 'ct':
      return normalizeCity(value);
    case 'st':
      return normalizeState(value, context.country);
    case 'zp':
      return normalizeZip(value, context.country);
    case 'country':
      return resolveCountry(value)?.alpha2;
    case 'external_id':
      return normalizeExternalId(value);
  }
}

const REASONS: Record<HashedUserDataKey, string> = {
  em: 'not an e-mail address',
  ph: 'not a phone number with a known country code',
  fn: 'no letters left after normalisation',
  ln: 'no letters left after normalisation',
  ge: 'not f/m (female/male)',
  db: 'not a date of birth between 1900 and today',
  ct: 'no letters left after normalisation',
  st: 'not a state (US: not a USPS state code or name)',
  zp: 'not a postal code (US: no 5-digit ZIP code)',
  country: 'not an ISO 3166-1 country code or name',
  external_id: 'empty',
};

/** Trimmed, non-empty string values of a scalar or list. */
function valuesOf(raw: RawHashedValue): string[] {
  const list: readonly Scalar[] = Array.isArray(raw) ? raw : [raw as Scalar];
  return list
    .filter((v): v is string | number => typeof v === 'string' || typeof v === 'number')
    .map((v) => String(v).trim())
    .filter((v) => v !== '');
}

/** NFC keeps `é` one code point, as Meta's UTF-8 examples (`Valéry` → `valéry`) are hashed. */
const lower = (value: string) => value.normalize('NFC').trim().toLowerCase();

/** Letters, combining marks and digits of any script; everything else (spaces, punctuation, symbols) goes. */
const lettersAndDigits = (value: string) => lower(value).replace(/[^\p{L}\p{M}\p{N}]/gu, '');

/** ASCII key for table look-ups: accents folded, `&` read as "and", only a–z and 0–9 kept. */
function foldKey(value: string): string {
  return value
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(/&/g, 'and')
    .replace(/[^a-z0-9]/g, '');
}

/** em: trim and lowercase. Internationalised addresses (`josé@bücher.de`) stay as written. */
export function normalizeEmail(value: string): string | undefined {
  const email = lower(value);
  return /^[^\s@]+@[^\s@]+\.[^\s@]+$/u.test(email) ? email : undefined;
}

/** fn, ln: lowercase, no punctuation, spaces or symbols; UTF-8 letters kept (`Valéry` → `valéry`). */
export function normalizeName(value: string): string | undefined {
  return lettersAndDigits(value) || undefined;
}

/** ct: lowercase with no punctuation, special characters or spaces (`South San Francisco` → `southsanfrancisco`). */
export function normalizeCity(value: string): string | undefined {
  return lettersAndDigits(value) || undefined;
}

/** ge: `f` or `m`. */
export function normalizeGender(value: string): 'f' | 'm' | undefined {
  const word = lower(value).replace(/[^a-z]/g, '');
  if (word === 'f' || word === 'female' || word === 'woman') return 'f';
  if (word === 'm' || word === 'male' || word === 'man') return 'm';
  return undefined;
}

/** external_id: one form everywhere so browser and server ids match: trimmed, case kept, then hashed. */
export function normalizeExternalId(value: string): string | undefined {
  return value.trim() || undefined;
}

const COUNTRY_BY_ALPHA2 = new Map(COUNTRIES.map((c) => [c.alpha2, c]));
const COUNTRY_BY_ALPHA3 = new Map(COUNTRIES.map((c) => [c.alpha3, c]));
const COUNTRY_BY_NAME = new Map(COUNTRIES.flatMap((c) => c.names.map((name) => [foldKey(name), c] as const)));

/**
 * country: ISO 3166-1 alpha-2 from an alpha-2 or alpha-3 code or a country name, in any case, with or
 * without accents and punctuation (`United States` → us, `UK` → gb, `DEU` → de).
 */
export function resolveCountry(value: string): Country | undefined {
  // Customers' countries are few: the folding below (Unicode normalisation, four regexes) runs once per spelling.
  let found = resolvedCountries.get(value);
  if (found === undefined) {
    found = lookUpCountry(value) ?? null;
    if (resolvedCountries.size >= 1_000) resolvedCountries.clear();
    resolvedCountries.set(value, found);
  }
  return found ?? undefined;
}
const resolvedCountries = new Map<string, Country | null>();

function lookUpCountry(value: string): Country | undefined {
  const key = foldKey(value);
  if (key === '') return undefined;
  return (
    (key.length === 2 ? COUNTRY_BY_ALPHA2.get(key) : undefined) ??
    (key.length === 3 ? COUNTRY_BY_ALPHA3.get(key) : undefined) ??
    COUNTRY_BY_NAME.get(key) ??
    (key.startsWith('the') ? COUNTRY_BY_NAME.get(key.slice(3)) : undefined)
  );
}

const US_STATE_BY_KEY = new Map<string, string>(
  US_STATES.flatMap(([code, ...names]) => [
    [code, code] as const,
    ...names.map((n) => [foldKey(n), code] as const),
  ]),
);

/**
 * st: US (or country unknown): the lowercase USPS code, from a code or a full name (`California` → ca,
 * `US-CA` → ca). Elsewhere: lowercase without punctuation, special characters or spaces.
 */
export function normalizeState(value: string, country?: Country): string | undefined {
  if (country === undefined || country.alpha2 === 'us') {
    const key = foldKey(value.replace(/^\s*us\s*-\s*/i, ''));
    const code = US_STATE_BY_KEY.get(key);
    if (code !== undefined) return code;
    if (country !== undefined) return undefined;
  }
  return lettersAndDigits(value) || undefined;
}

/**
 * zp: lowercase without spaces or dashes (`M1 1AE` → m11ae). US: the first five digits
 * (`94035-1234` → 94035); a nine-digit ZIP+4 is read as US when the country is unknown.
 */
export function normalizeZip(value: string, country?: Country): string | undefined {
  const compact = lettersAndDigits(value);
  if (compact === '') return undefined;
  const usLike = /^\d{5}(?:\d{4})?$/.test(compact);
  if (country?.alpha2 === 'us' || (country === undefined && usLike)) {
    return /^\d{5}/.exec(compact)?.[0];
  }
  return compact;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

/**
 * db: YYYYMMDD from the usual ways of writing a date: `19970216`, `1997-02-16` (ISO, also with a time),
 * `2/16/1997` (month first, as in Meta's example and US usage, unless the first number cannot be a month),
 * `16.02.1997` (day first, as dotted dates are written in Europe, unless the second number cannot be a
 * month), `16 Feb 1997`, `February 16th, 1997`. Two-digit years are ambiguous and rejected; so are dates
 * before 1900 or after `today` (Meta accepts years from 1900 to the current year).
 */
export function normalizeDateOfBirth(value: string, today: Date = new Date()): string | undefined {
  const s = value.trim().toLowerCase();
  let parts: [number, number, number] | undefined;
  let m: RegExpExecArray | null;
  if ((m = /^(\d{4})(\d{2})(\d{2})$/.exec(s))) {
    parts = [Number(m[1]), Number(m[2]), Number(m[3])];
  } else if ((m = /^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[t\s].*)?$/.exec(s))) {
    parts = [Number(m[1]), Number(m[2]), Number(m[3])];
  } else if ((m = /^(\d{1,2})\s*([-/.])\s*(\d{1,2})\s*\2\s*(\d{4})$/.exec(s))) {
    const [a, b, year] = [Number(m[1]), Number(m[3]), Number(m[4])];
    let dayFirst = m[2] === '.';
    if (a > 12) dayFirst = true;
    else if (b > 12) dayFirst = false;
    parts = dayFirst ? [year, b, a] : [year, a, b];
  } else {
    parts = parseWrittenDate(s);
  }
  if (parts === undefined) return undefined;
  const [year, month, day] = parts;
  if (year < 1900 || month < 1 || month > 12 || day < 1) return undefined;
  if (day > new Date(Date.UTC(year, month, 0)).getUTCDate()) return undefined;
  const todayKey = today.getUTCFullYear() * 10000 + (today.getUTCMonth() + 1) * 100 + today.getUTCDate();
  if (year * 10000 + month * 100 + day > todayKey) return undefined;
  return `${year}${String(month).padStart(2, '0')}${String(day).padStart(2, '0')}`;
}

/** `16 Feb 1997`, `February 16, 1997`, `feb 16th 1997`. */
function parseWrittenDate(s: string): [number, number, number] | undefined {
  const tokens = s.split(/[\s,./-]+/).filter(Boolean);
  if (tokens.length !== 3) return undefined;
  let year: number | undefined;
  let month: number | undefined;
  let day: number | undefined;
  for (const token of tokens) {
    const word = /^[a-z]+$/.test(token) ? token : undefined;
    if (word !== undefined && word.length >= 3) {
      const index = MONTHS.findIndex((name) => word.startsWith(name));
      if (index < 0 || month !== undefined) return undefined;
      month = index + 1;
    } else if (/^\d{4}$/.test(token) && year === undefined) {
      year = Number(token);
    } else if (/^\d{1,2}(?:st|nd|rd|th)?$/.test(token) && day === undefined) {
      day = Number.parseInt(token, 10);
    } else {
      return undefined;
    }
  }
  return year !== undefined && month !== undefined && day !== undefined ? [year, month, day] : undefined;
}

/**
 * National trunk prefixes that are dropped before the country calling code is added. Default `0`;
 * NANP `1`. Italy, San Marino, the Vatican and Côte d'Ivoire keep their leading 0: it is part of the
 * number in E.164 (+39 06 …).
 */
const TRUNK_PREFIXES: Record<string, readonly string[]> = {
  it: [],
  sm: [],
  va: [],
  ci: [],
  ru: ['8'],
  kz: ['8'],
  by: ['8'],
  tj: ['8'],
  tm: ['8'],
  uz: ['8'],
  lt: ['8', '0'],
  hu: ['06'],
};

/**
 * ph: digits only, no leading zeros, with the country code (`(650)555-1212` in the US → 16505551212).
 *
 * A number written internationally (`+44 20 7946 0958`, `0044 20 …`, `011 44 …` from NANP) keeps its
 * country code, and a `(0)` after it is dropped. A number written nationally gets the calling code of
 * `country` after its trunk prefix is dropped (`020 7946 0958` in GB → 442079460958); if it has no trunk
 * prefix, already starts with that calling code and is longer than a national number (> 10 digits), it
 * is taken as international. Without a country, a number of 11 or more digits is taken to carry its
 * country code; a shorter one cannot be matched by Meta and is rejected rather than sent wrong.
 * Extensions (`x123`, `ext. 123`) are dropped. Results must have 7 to 15 digits (E.164).
 */
export function normalizePhone(value: string, country?: Country): string | undefined {
  let s = value.normalize('NFKC').trim();
  s = s.replace(/\s*(?:ext\.?|extension|x|#)\s*\d+\s*$/i, '');
  s = s.replace(/\(\s*0\s*\)/g, '');
  const plus = s.startsWith('+');
  let digits = s.replace(/\D/g, '');
  if (digits === '') return undefined;

  const callingCode = country?.callingCode ?? undefined;
  let international = plus;
  if (!international && digits.startsWith('00')) {
    international = true;
  } else if (!international && callingCode === '1' && digits.startsWith('011')) {
    digits = digits.slice(3);
    international = true;
  }

  if (international) {
    digits = digits.replace(/^0+/, '');
  } else if (callingCode !== undefined && country !== undefined) {
    const trunks = TRUNK_PREFIXES[country.alpha2] ?? (callingCode === '1' ? ['1'] : ['0']);
    const trunk = trunks.find((prefix) => digits.startsWith(prefix));
    if (trunk !== undefined) {
      digits = callingCode + digits.slice(trunk.length);
    } else if (!(digits.startsWith(callingCode) && digits.length > 10)) {
      digits = callingCode + digits;
    }
  } else {
    digits = digits.replace(/^0+/, '');
    if (digits.length < 11) return undefined;
  }
  return digits.length >= 7 && digits.length <= 15 ? digits : undefined;
}
