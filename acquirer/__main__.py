"""`python -m acquirer`: the sandbox bank on `settings.host:settings.acquirer_port`."""

import uvicorn

from acquirer.app import create_app
from kassa.logs import configure_logging
from kassa.settings import get_settings


def main() -> None:
    configure_logging()
    settings = get_settings()
    # log_config=None keeps our key=value lines instead of uvicorn's own format.
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.acquirer_port, log_config=None
    )


if __name__ == "__main__":
    main()
