"""The OpenAPI document as a contract: every operation lists the problems it can answer, as the
api sends them (`application/problem+json`, api/problems.py's `Problem`).

Most follow from what a route takes, and are added here for every route alike: a body (400
`malformed_json`, 413, 422), parameters (422), a login (401), a permission (403), a path naming a
thing (404), Temporal (503). The rest are the route's own (`responses=answers(409)`). FastAPI's
422, its `HTTPValidationError` as `application/json`, is not what the api sends: replaced.
"""

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from api.deps import get_access_claims, get_temporal, requires
from api.problems import Problem, problem_response

_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def document_problems(app: FastAPI) -> None:
    """`app.openapi()` with each operation's problems."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        routes = {
            (method.lower(), context.path_format): context.original_route
            for context in iter_route_contexts(app.routes)
            if isinstance(context.original_route, APIRoute)
            for method in context.methods or ()
        }
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                responses = operation["responses"]
                for status in _implied_statuses(routes[method, path]):
                    if status == 422 or str(status) not in responses:
                        responses[str(status)] = problem_response(status)
        schemas = document["components"]["schemas"]
        for name in _FASTAPI_VALIDATION_SCHEMAS:
            schemas.pop(name, None)
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas |= problem.pop("$defs", {}) | {"Problem": problem}
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way


def _implied_statuses(route: APIRoute) -> Iterator[int]:
    dependant = route.dependant
    calls = set(_calls(dependant))
    if route.body_field is not None:
        yield from (400, 413)
    if route.body_field is not None or _parameters(dependant):
        yield 422
    if get_access_claims in calls:
        yield 401
    # `requires(permission)` answers 403 for a role without it.
    if any(
        getattr(call, "__qualname__", "").startswith(f"{requires.__qualname__}.") for call in calls
    ):
        yield 403
    if _parameters(dependant, path_only=True):
        yield 404
    if get_temporal in calls:
        yield 503


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _parameters(dependant: Dependant, path_only: bool = False) -> bool:
    found = dependant.path_params or (
        not path_only
        and (dependant.query_params or dependant.header_params or dependant.cookie_params)
    )
    return bool(found) or any(_parameters(d, path_only) for d in dependant.dependencies)
