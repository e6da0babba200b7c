# tasktrail: the service as a container. Build: docker build -t tasktrail .
# Configuration comes from the environment at run time (README, "Production"); nothing secret is
# baked in.

# Both stages start from python:3.12-slim pinned by digest (its multi-architecture index): the
# build takes what was reviewed, not whatever the tag points to that day. To move to a newer
# image, read the tag's current digest with
#   docker buildx imagetools inspect python:3.12-slim
# (the "Digest:" line) and replace it in both FROM lines.

# --- build: the wheel, from the project's own pyproject ---------------------------------------
FROM python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tasktrail ./tasktrail
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# --- runtime: the wheel and its dependencies, run as a user without privileges ----------------
FROM python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea
ENV PYTHONUNBUFFERED=1 \
    TASKTRAIL_LOG_FORMAT=json
RUN useradd --create-home --uid 10001 tasktrail
COPY --from=build /dist /tmp/dist
# pip compiles the bytecode here, once: a worker that has to compile on its first start can miss
# uvicorn's start-up ping and be restarted.
RUN pip install --no-cache-dir --compile /tmp/dist/tasktrail-*.whl \
    && rm -rf /tmp/dist
USER tasktrail
WORKDIR /home/tasktrail
EXPOSE 8000
# slim has no curl: python's urllib raises (exit 1) on a 503 or no answer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
ENTRYPOINT ["tasktrail"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
