"""Connecting to Temporal, the same way from the api, the worker and the tests."""

from temporalio.client import Client

from kassa.settings import Settings


async def connect(settings: Settings, lazy: bool = False) -> Client:
    return await Client.connect(settings.temporal_target, namespace=settings.temporal_namespace, lazy=lazy)
