import { z } from 'zod';

/** An amount of money: integer minor units plus ISO 4217 currency, never a float. */
export const MoneyAmount = z
  .object({
    currency: z
      .string()
      .regex(/^[A-Z]{3}$/)
      .describe('ISO 4217 currency code in upper case, e.g. USD, JPY, KWD.'),
    minorUnits: z
      .int()
      .describe(
        "Amount in the currency's minor unit as an integer (cents for USD, yen for JPY, fils for KWD).",
      ),
    display: z
      .string()
      .max(64)
      .describe('The exact amount formatted for people, e.g. "1234.56 USD". Informational only.'),
  })
  .describe('An amount of money in one currency.');
export type MoneyAmount = z.infer<typeof MoneyAmount>;

export const RecentRevenue = z
  .object({
    window: z
      .string()
      .regex(/^[0-9]+[hd]$/)
      .describe('The period the totals cover, counted back from updateTime, e.g. "24h" or "30d".'),
    totals: z
      .array(MoneyAmount)
      .max(200)
      .meta({
        description:
          'Revenue per currency in the window; each payment counts once however many events report it.',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['currency'],
      }),
    summary: z
      .string()
      .max(256)
      .describe('All totals on one line for the printer column, e.g. "1234.56 USD, 9800 JPY".'),
    updateTime: z.iso.datetime().describe('When the totals were last computed.'),
  })
  .describe('Recent revenue per currency, refreshed at a bounded rate.');
