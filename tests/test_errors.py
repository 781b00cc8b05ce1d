"""The exception tree: two branches under one root, statuses where answers are made."""

from __future__ import annotations

import inspect

import orjson

from proxy import errors


def test_every_exception_sits_in_the_tree() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, Exception) and c.__module__ == errors.__name__]
    outside = [c.__name__ for c in classes
               if not issubclass(c, errors.ProxyError) and c is not errors.SettingsError]
    assert not outside
    branches = (errors.HttpError, errors.UseUpstream, errors.Conflict)
    assert all(issubclass(c, branches) or c in (errors.ProxyError, errors.SettingsError)
               for c in classes)
    # The docstring draws every class.
    assert all(c.__name__ in (errors.__doc__ or "") for c in classes)


def test_statuses_and_headers() -> None:
    assert errors.UpstreamTimeout("x").status == 504
    assert isinstance(errors.UpstreamTimeout("x"), errors.UpstreamError)
    assert errors.StoreUnavailable("x").status == 503
    busy = errors.Overloaded("full", retry_after=3)
    assert (busy.status, busy.headers()) == (503, {"Retry-After": "3"})
    assert errors.InvalidRequest("bad", 400).status == 400
    assert errors.PayloadTooLarge("big").headers() == {}


def test_detail_body_is_the_upstreams_shape() -> None:
    assert orjson.loads(errors.detail_body('say "hi"')) == {"detail": 'say "hi"'}
