import { pino, type Logger } from 'pino';

/**
 * JSON logs on stdout. Signature headers, tokens and secrets are redacted wherever they appear in a
 * logged object, as a second line of defence: code should not log them in the first place.
 */
export function createLogger(component: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name: `tally-${component}`,
    level,
    redact: {
      paths: [
        'req.headers["stripe-signature"]',
        'req.headers["x-cal-signature-256"]',
        'req.headers.authorization',
        'req.headers.cookie',
        '*.signingSecrets',
        '*.webhookSecrets',
        '*.accessToken',
        '*.access_token',
        '*.password',
        'databaseUrl',
      ],
      censor: '[redacted]',
    },
  });
}
