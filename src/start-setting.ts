/**
 * A document or folder named by a setting that could not be loaded or opened
 * at start: the fatal line names the setting in its text and in `variables`,
 * as for a bad value or an unusable HOST/PORT, so a log pipeline finds all
 * three the same way.
 */
export class SettingLoadError extends Error {
  readonly variables: string[];

  constructor(setting: string, cause: unknown, failure = "cannot load") {
    super(`${setting}: ${failure}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "SettingLoadError";
    this.variables = [setting];
  }
}

/**
 * A document or folder named by a setting that cannot be loaded at start stops the
 * gateway with a message naming that setting, as a bad value of any other setting does.
 */
export async function startNamingSetting<T>(
  setting: string,
  started: Promise<T>,
  failure?: string,
): Promise<T> {
  try {
    return await started;
  } catch (error) {
    throw new SettingLoadError(setting, error, failure);
  }
}
