"""OpenTelemetry tracing across api → workflow → activities → acquirer. Off unless
`KASSA_OTLP_ENDPOINT` is set; then spans go to that collector over OTLP/HTTP.

FastAPI opens a span per request (from the caller's `traceparent`); Temporal's TracingInterceptor
carries it in the workflow's headers to the workflow and its activities; the acquirer client opens
a span per call and passes the trace on in a `traceparent` header.
"""

from opentelemetry import trace
from temporalio.client import Interceptor

from kassa.settings import Settings

tracer = trace.get_tracer("kassa")


def configure_tracing(settings: Settings, service: str) -> list[Interceptor]:
    """Installs the exporter when an endpoint is configured; returns the Temporal client
    interceptors to connect with (none when tracing is off)."""
    if not settings.otlp_endpoint:
        return []
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from temporalio.contrib.opentelemetry import TracingInterceptor

    provider = TracerProvider(resource=Resource.create({"service.name": f"kassa-{service}"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint.rstrip('/')}/v1/traces")
        )
    )
    trace.set_tracer_provider(provider)
    return [TracingInterceptor()]
