// haraka-config's ini reader ships no types: the parser the LDA command uses to read rspamd.ini
// exactly as Haraka would.
declare module 'haraka-config/lib/readers/ini' {
  const reader: {
    parseIni(name: string, options: { booleans?: readonly string[] }, data: string): unknown
    /** where the reader reports invalid lines and unsafe keys */
    logger: (msg: string) => void
  }
  export = reader
}
