"""The web app: ``greenrunner serve`` (extra ``greenrunner[web]``).

``settings`` (no web dependencies) -> ``service`` (what the app does, over the database)
-> ``api`` (REST) and ``pages`` (HTML), put together by ``app.create_app``. Runs happen in
``runner``'s background threads; uploads are unpacked by ``archive`` and checked by
``uploads``.
"""
