// haraka-dsn ships no types: the one constructor we use. Haraka's respond() takes an object whose
// constructor is named DSN as (code, enhanced status + text); its toString() is what Haraka logs.
declare module 'haraka-dsn' {
  class DSN {
    readonly code: number
    readonly reply: string | string[]
    toString(): string
    /** `code` with the enhanced status class.subject.detail (class from the code) and the text */
    static create(code: number, msg: string, subject?: number, detail?: number): DSN
  }
  export = DSN
}
