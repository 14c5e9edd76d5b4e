// haraka-email-message ships no types: the parts of its Header the tests use (Haraka's own header
// object, to check what the plugin's header-name rule does against the real thing).
declare module 'haraka-email-message' {
  export class Header {
    header_list: string[]
    parse(lines: string[]): void
    get(name: string): string
    get_all(name: string): readonly string[]
    get_decoded(name: string): string
    add_end(name: string, value: string): void
    remove(name: string): void
  }
}
