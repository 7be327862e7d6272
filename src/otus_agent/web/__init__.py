"""The HTTP API and the web console (issue 17): needs the ``web`` extra (FastAPI, uvicorn)."""
