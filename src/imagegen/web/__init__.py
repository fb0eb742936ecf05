"""The playground: a few static pages (HTML, CSS, vanilla JavaScript) over the public API.

Nothing is built at install time and nothing is loaded from outside imagegen: the files live
in ``static/`` and are served by ``routes.py`` with a Content-Security-Policy limited to
``'self'``. The pages only call the documented HTTP API, as any other client does.
"""
