"""`tagd web`: the photo library in a browser, for its owner only.

- server.py: the command (address, password, token, uvicorn);
- app.py: pages and review actions (Starlette, Jinja2 templates in templates/, static/);
- catalog.py: what the pages read from the index; review goes through tagd.review;
- auth.py: token, password hash, sessions, CSRF;
- thumbs.py: thumbnails and previews, cached by content hash.
"""
