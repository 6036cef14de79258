/**
 * Money is integer minor units plus an ISO 4217 currency, never a float. The number of decimals is
 * Stripe's, not ISO's: ISK, HUF and TWD are two-decimal in Stripe's API (https://docs.stripe.com/currencies).
 */
const ZERO_DECIMAL = new Set([
  'BIF',
  'CLP',
  'DJF',
  'GNF',
  'JPY',
  'KMF',
  'KRW',
  'MGA',
  'PYG',
  'RWF',
  'UGX',
  'VND',
  'VUV',
  'XAF',
  'XOF',
  'XPF',
]);
const THREE_DECIMAL = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

export interface Money {
  /** Integer amount in the currency's minor unit. */
  minor: number;
  /** ISO 4217, upper case. */
  currency: string;
}

export function normaliseCurrency(code: string): string {
  const upper = code.trim().toUpperCase();
  if (!/^[A-Z]{3}$/.test(upper)) throw new Error(`not an ISO 4217 currency code: ${JSON.stringify(code)}`);
  return upper;
}

export function currencyDecimals(currency: string): number {
  const c = normaliseCurrency(currency);
  return ZERO_DECIMAL.has(c) ? 0 : THREE_DECIMAL.has(c) ? 3 : 2;
}

export function money(minor: number, currency: string): Money {
  if (!Number.isSafeInteger(minor))
    throw new Error(`amount must be an integer number of minor units, got ${minor}`);
  return { minor, currency: normaliseCurrency(currency) };
}

/** The exact decimal amount as a string: 123456 USD → "1234.56", 9800 JPY → "9800", 1500 KWD → "1.500". */
export function formatDecimal(minor: number, currency: string): string {
  const decimals = currencyDecimals(currency);
  const negative = minor < 0;
  const digits = String(Math.abs(minor)).padStart(decimals + 1, '0');
  const whole = decimals === 0 ? digits : digits.slice(0, -decimals);
  const fraction = decimals === 0 ? '' : `.${digits.slice(-decimals)}`;
  return `${negative ? '-' : ''}${whole}${fraction}`;
}

/** "1234.56 USD": exact, unambiguous, for status fields and logs. */
export function formatMoney(m: Money): string {
  return `${formatDecimal(m.minor, m.currency)} ${m.currency}`;
}

/** The decimal value as a JavaScript number, for APIs that want one (Meta's custom_data.value). */
export function toMajorNumber(m: Money): number {
  return Number(formatDecimal(m.minor, m.currency));
}
