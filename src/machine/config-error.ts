// The error for a configuration a person must fix.

/** A configuration a person must fix: the message says what and how. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
