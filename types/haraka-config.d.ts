// haraka-config ships no types: the part of its public API the tests use (the plugin gets its config
// from Haraka, rspamd-lda reads its file with src/config/ini.ts). get() takes an absolute path too.
declare module 'haraka-config' {
  const config: {
    get(name: string, type?: string, options?: { booleans?: readonly string[] }): unknown
    /** closes the fs.watch get() left on the file's directory */
    stop_watching(name: string): void
  }
  export = config
}
