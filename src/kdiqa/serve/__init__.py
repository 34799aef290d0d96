"""``kdiqa serve``: scores and quality maps over HTTP (FastAPI + uvicorn; ``pip install kdiqa[serve]``).

:func:`create_app` builds the application around one loaded backend; :class:`ServeSettings` holds its
limits. See docs/serve.md for the endpoints, the limits and the web page.
"""

from .app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
