"""`kassa acquirer`: the sandbox bank on `settings.host:settings.acquirer_port`."""

import uvicorn

from acquirer.app import create_app
from kassa.settings import Settings


def serve(settings: Settings) -> None:
    # log_config=None keeps our JSON lines instead of uvicorn's own format.
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.acquirer_port, log_config=None
    )
