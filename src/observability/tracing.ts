// OpenTelemetry tracing: a server span per request and a client span per
// upstream call, exported over OTLP/HTTP when `tracing.otlpUrl` is set. The
// client's `traceparent` is continued; each upstream call carries the
// traceparent of its own client span. Without an exporter nothing is
// recorded and the client's traceparent is forwarded as it came.

import { context, propagation, trace, SpanKind, SpanStatusCode, type Context, type Span, type Tracer } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { DEFAULTS } from '../config/defaults.js'

const propagator = new W3CTraceContextPropagator()

const getter = {
  keys: (carrier: Record<string, unknown>) => Object.keys(carrier),
  get: (carrier: Record<string, unknown>, key: string) => {
    const v = carrier[key]
    return typeof v === 'string' || Array.isArray(v) ? v as string | string[] : undefined
  },
}
const setter = { set: (carrier: Record<string, string | string[]>, key: string, value: string) => { carrier[key] = value } }

export interface Tracing {
  tracer: Tracer
  /** The span context of an incoming request, continued from its traceparent. */
  startServerSpan: (name: string, headers: Record<string, unknown>, attributes: Record<string, string>) => { span: Span, ctx: Context }
  /** A child span for an upstream call; writes its traceparent into `headers`. */
  startClientSpan: (parent: Context, name: string, headers: Record<string, string | string[]>, attributes: Record<string, string>) => Span
  shutdown: () => Promise<void>
}

export function createTracing (otlpUrl: string, serviceName: string = DEFAULTS.tracing.serviceName): Tracing {
  const exporter = new OTLPTraceExporter({ url: otlpUrl.endsWith('/v1/traces') ? otlpUrl : `${otlpUrl.replace(/\/$/, '')}/v1/traces` })
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName }),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 500 })],
  })
  const tracer = provider.getTracer('portico')
  return {
    tracer,
    startServerSpan (name, headers, attributes) {
      const parent = propagator.extract(context.active(), headers, getter)
      const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent)
      return { span, ctx: trace.setSpan(parent, span) }
    },
    startClientSpan (parent, name, headers, attributes) {
      const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, parent)
      propagator.inject(trace.setSpan(parent, span), headers, setter)
      return span
    },
    shutdown: async () => { await provider.shutdown() },
  }
}

export function endSpan (span: Span, status: number | undefined, error?: unknown): void {
  if (status !== undefined) span.setAttribute('http.response.status_code', status)
  if (error !== undefined || (status !== undefined && status >= 500)) {
    span.setStatus({ code: SpanStatusCode.ERROR, ...(error instanceof Error ? { message: error.message } : {}) })
  }
  span.end()
}

// Keep the global propagation API consistent for libraries that read it.
propagation.setGlobalPropagator(propagator)
