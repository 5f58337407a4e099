"""``fastidx serve``: the cache's verified dataset files over HTTP (the server is ``fastidx.serve``)."""

from __future__ import annotations


def run(args) -> int:
    from ..serve import run as serve

    return serve(args)
