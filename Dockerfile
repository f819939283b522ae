# The platform's image: the same one runs web, worker, beat and the one-shot migration (docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml ./
RUN pip install .
COPY . .
EXPOSE 8000
CMD ["python", "-m", "openrouter_site.uvicorn_server", "openrouter_site.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
