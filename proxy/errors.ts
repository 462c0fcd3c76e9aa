// Proxy-specific error helpers. The codes, EdgeError and the code -> HTTP status map are config/errors.ts's.
import type { ErrorCode } from '../config/errors.js'

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
