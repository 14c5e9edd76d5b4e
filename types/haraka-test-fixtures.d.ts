// haraka-test-fixtures ships no types: the parts the tests use.
declare module 'haraka-test-fixtures' {
  import type { EventEmitter } from 'node:events'

  export interface FixtureResults {
    add(plugin: unknown, obj: Record<string, unknown>): unknown
    get(name: string | object): Record<string, unknown> | undefined
  }

  export interface FixtureHeader {
    get(name: string): string
    get_all(name: string): string[]
    get_decoded(name: string): string
    lines(): readonly string[]
  }

  export interface FixtureTransaction {
    uuid: string
    mail_from: unknown
    rcpt_to: unknown[]
    header: FixtureHeader
    message_stream: EventEmitter & {
      pipe(dest: NodeJS.WritableStream, opts?: Record<string, unknown>): unknown
      get_data(cb: (data: Buffer) => void): void
    }
    notes: Record<string, unknown>
    results: FixtureResults
    data_bytes: number
    add_data(line: Buffer | string): void
    end_data(cb: () => void): void
    add_header(name: string, value: string): void
    remove_header(name: string): void
  }

  export interface FixtureConnection {
    transaction: FixtureTransaction | null
    remote: { ip?: string; host?: string | null; is_private?: boolean; is_local?: boolean; closed?: boolean }
    local: { ip?: string; port?: number; host?: string }
    hello: { host?: string | null; verb?: string }
    tls: { enabled: boolean; cipher: { name?: string; version?: string } }
    notes: Record<string, unknown>
    results: FixtureResults
    relaying: boolean
    client: unknown
    init_transaction(cb?: () => void): void
    reset_transaction(cb?: () => void): void
  }

  export interface FixturePlugin {
    name: string
    timeout: number
    config: {
      get(name: string, opts?: unknown, cb?: () => void): unknown
      module_config(d: string, o?: string): unknown
    }
    register(): void
    [method: string]: unknown
  }

  export const plugin: new (name: string) => FixturePlugin
  export const connection: {
    createConnection(client?: unknown, server?: unknown, cfg?: unknown): FixtureConnection
  }
  export const transaction: { createTransaction(uuid?: string, cfg?: unknown): FixtureTransaction }
  export const hooks: {
    /** `a@b` or `<a@b>` → an @haraka/email-address Address, as Haraka hands MAIL FROM and RCPT TO to plugins */
    toAddress(address: string): { address: string; isNull(): boolean }
  }
}
