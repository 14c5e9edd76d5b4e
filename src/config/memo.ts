// oncePerConfig(): a value derived from a parsed Config, worked out on first use and kept for as long as
// that Config lives. Not parsing; here because every such value is keyed by the config object.

/**
 * `fn` worked out once per config object and then remembered (a parsed Config is never changed;
 * a reload makes a new one): for values the hot path would otherwise rebuild for every message.
 */
export function oncePerConfig<C extends object, T>(fn: (cfg: C) => T): (cfg: C) => T {
  const values = new WeakMap<C, T>()
  return (cfg) => {
    if (values.has(cfg)) return values.get(cfg) as T
    const value = fn(cfg)
    values.set(cfg, value)
    return value
  }
}
