// Every failure the edge reports has a stable code; one function maps codes to HTTP status.

export const errorCodes = [
  'EP_ERR_CONFIG',
  'EP_ERR_NO_ROUTE',
  'EP_ERR_NO_HEALTHY_BACKEND',
  'EP_ERR_SHARD_UNAVAILABLE',
  'EP_ERR_UPSTREAM_CONNECT',
  'EP_ERR_UPSTREAM_TIMEOUT',
  'EP_ERR_UPSTREAM_RESPONSE',
  'EP_ERR_UPSTREAM_RESET',
  'EP_ERR_BAD_REQUEST',
  'EP_ERR_HEADERS_TOO_LARGE',
  'EP_ERR_OVERLOADED',
  'EP_ERR_CLIENT_ABORTED',
  'EP_ERR_TLS_CERT',
  'EP_ERR_HTTP_VERSION',
  'EP_ERR_INTERNAL',
] as const

export type ErrorCode = (typeof errorCodes)[number]

export class EdgeError extends Error {
  readonly code: ErrorCode
  constructor (code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'EdgeError'
    this.code = code
  }
}

const statusByCode: Record<ErrorCode, number> = {
  EP_ERR_CONFIG: 500,
  EP_ERR_NO_ROUTE: 404,
  EP_ERR_NO_HEALTHY_BACKEND: 503,
  EP_ERR_SHARD_UNAVAILABLE: 503,
  EP_ERR_UPSTREAM_CONNECT: 502,
  EP_ERR_UPSTREAM_TIMEOUT: 504,
  EP_ERR_UPSTREAM_RESPONSE: 502,
  EP_ERR_UPSTREAM_RESET: 502,
  EP_ERR_BAD_REQUEST: 400,
  EP_ERR_HEADERS_TOO_LARGE: 431,
  EP_ERR_OVERLOADED: 503,
  EP_ERR_CLIENT_ABORTED: 499,
  EP_ERR_TLS_CERT: 500,
  EP_ERR_HTTP_VERSION: 505,
  EP_ERR_INTERNAL: 500,
}

export function statusFor (code: ErrorCode): number {
  return statusByCode[code]
}

/** Classifies an error raised by undici (or a socket) into one of our codes. */
export function classifyUpstreamError (err: unknown): ErrorCode {
  const e = err as { code?: string, cause?: { code?: string } } | null
  const code = e?.code ?? ''
  const causeCode = e?.cause?.code ?? ''
  switch (code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'UND_ERR_CONNECT':
      return 'EP_ERR_UPSTREAM_CONNECT'
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'EP_ERR_UPSTREAM_TIMEOUT':
      return 'EP_ERR_UPSTREAM_TIMEOUT'
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_STATUS':
    case 'HPE_INVALID_VERSION':
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_TRANSFER_ENCODING':
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_HEADER_OVERFLOW':
    case 'UND_ERR_HEADERS_OVERFLOW':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_INFO':
    case 'EP_ERR_UPSTREAM_RESPONSE':
      return 'EP_ERR_UPSTREAM_RESPONSE'
  }
  if (causeCode === 'ECONNREFUSED') return 'EP_ERR_UPSTREAM_CONNECT'
  if (code.startsWith('HPE_')) return 'EP_ERR_UPSTREAM_RESPONSE'
  return 'EP_ERR_UPSTREAM_RESET'
}
