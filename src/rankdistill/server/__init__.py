"""The HTTP API (FastAPI): `create_app(reranker)`; `rankdistill serve` runs it under uvicorn."""
