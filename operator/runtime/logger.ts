/**
 * The logging surface the runtime needs. pino's Logger satisfies it, so the operator passes its pino
 * instance; tests and library users that want silence pass nothing. Callers log keys, reasons and
 * error descriptions only, never objects: a cached Secret must not end up in a log line.
 */
export interface Logger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

const ignore = (): void => {};

export const silentLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };
