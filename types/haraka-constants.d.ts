// haraka-constants ships no types: the hook return codes we use.
declare module 'haraka-constants' {
  export const cont: number
  export const stop: number
  export const deny: number
  export const denysoft: number
  export const denydisconnect: number
  export const denysoftdisconnect: number
  export const disconnect: number
  export const ok: number
  export const next_hook: number
  export const delay: number
}
