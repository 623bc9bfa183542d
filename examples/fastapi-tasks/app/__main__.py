"""`python -m app`: serve on $PORT (default 8000)."""

from __future__ import annotations

import os

import uvicorn

from app.config import settings

if __name__ == "__main__":
    uvicorn.run("app.main:app", host=os.environ.get("HOST", "127.0.0.1"), port=settings.port)
