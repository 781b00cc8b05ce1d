FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip install --no-cache-dir '.[speed]'
USER nobody
EXPOSE 8090
ENTRYPOINT ["agent-memory-proxy", "serve", "--host", "0.0.0.0"]
