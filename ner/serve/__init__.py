"""``ner serve``: an HTTP service for a trained tagger (the ``serve`` extra: FastAPI, uvicorn).

``app.py`` holds the routes and the server (it imports the web framework), ``batcher.py`` gathers concurrent
requests into batches tagged in one worker thread, ``limits.py`` the request limits. The page's HTML, CSS and
JavaScript are in ``ner/web/``.
"""
