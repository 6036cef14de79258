import { describe, expect, it } from 'vitest';
import { currencyDecimals, formatDecimal, formatMoney, money, toMajorNumber } from './money.js';

describe('money', () => {
  it.each([
    [123456, 'usd', '1234.56'],
    [5, 'USD', '0.05'],
    [0, 'eur', '0.00'],
    [9800, 'JPY', '9800'],
    [1500, 'KWD', '1.500'],
    [1, 'BHD', '0.001'],
    [-250, 'GBP', '-2.50'],
    // Stripe treats ISK as two-decimal although ISO 4217 says zero.
    [10000, 'ISK', '100.00'],
  ])('formats %i %s exactly as %s', (minor, currency, expected) => {
    expect(formatDecimal(minor, currency)).toBe(expected);
  });

  it('knows Stripe’s zero- and three-decimal currencies', () => {
    expect(['JPY', 'KRW', 'VND', 'CLP', 'XOF'].map(currencyDecimals)).toEqual([0, 0, 0, 0, 0]);
    expect(['KWD', 'BHD', 'JOD', 'OMR', 'TND'].map(currencyDecimals)).toEqual([3, 3, 3, 3, 3]);
    expect(['USD', 'EUR', 'HUF', 'TWD'].map(currencyDecimals)).toEqual([2, 2, 2, 2]);
  });

  it('refuses floats and non-ISO codes instead of rounding silently', () => {
    expect(() => money(12.5, 'USD')).toThrow(/integer number of minor units/);
    expect(() => money(100, 'dollars')).toThrow(/ISO 4217/);
  });

  it('formats for people and converts for APIs that want a number', () => {
    expect(formatMoney(money(199900, 'usd'))).toBe('1999.00 USD');
    expect(toMajorNumber(money(1999, 'EUR'))).toBe(19.99);
    expect(toMajorNumber(money(1999, 'JPY'))).toBe(1999);
    expect(toMajorNumber(money(1999, 'KWD'))).toBe(1.999);
  });
});
