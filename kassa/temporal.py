"""Connecting to Temporal, the same way from the api, the worker and the tests."""

from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.runtime import Runtime

from kassa.settings import Settings


async def connect(
    settings: Settings,
    lazy: bool = False,
    interceptors: Sequence[Interceptor] = (),
    runtime: Runtime | None = None,
) -> Client:
    return await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        lazy=lazy,
        interceptors=interceptors,
        runtime=runtime,
    )
